// The dating gateway's settings, shared by listen mode (the gateway in `troupe node`) and connect
// mode (`troupe dating --connect HOST`).

import type { SettingSpec } from '../../runtime/index.js';

export const SOURCE_PORT: SettingSpec = {
  name: 'dating-source-port',
  kind: 'port',
  default: 9090,
  description: 'Event Source port of the dating game (listened on, or dialled in connect mode)',
};
export const LISTENER_PORT: SettingSpec = {
  name: 'dating-listener-port',
  kind: 'port',
  default: 9099,
  description: 'Event Listener port of the dating game (listened on, or dialled in connect mode)',
};
export const MAX_EVENTS: SettingSpec = {
  name: 'dating-max-events',
  kind: 'int',
  default: 50_000_000,
  min: 1,
  max: 1_000_000_000,
  description: 'Highest sequence number a round accepts (memory follows the events received, not this number)',
};
export const SOURCE_IDLE: SettingSpec = {
  name: 'dating-source-idle',
  kind: 'duration',
  default: 60_000,
  min: 100,
  description: 'An Event Source silent this long is disconnected (its round ends incomplete)',
};

export const LISTENER_WAIT: SettingSpec = {
  name: 'dating-listener-wait',
  kind: 'duration',
  default: 10_000,
  min: 0,
  description: 'A finished round with no Event Listener is dropped after this long (a listener arriving later waits for the next round)',
};

export const EARLY_LISTENER_WAIT: SettingSpec = {
  name: 'dating-early-listener-wait',
  kind: 'duration',
  default: 30_000,
  min: 10,
  description: 'An Event Listener that connected before any round is closed after this long without one',
};

export const DATING_SETTINGS: readonly SettingSpec[] = [SOURCE_PORT, LISTENER_PORT, MAX_EVENTS, SOURCE_IDLE, LISTENER_WAIT, EARLY_LISTENER_WAIT];
