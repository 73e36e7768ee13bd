// The actor `user/<id>`: one per user, durable. Its presence part (last report, for the online
// counter) and its activity part (event aggregates) are written in their own files.

import { defineActor } from '../runtime/index.js';
import { initialPresence, presenceHandlers, presenceView, type PresenceState } from './user-presence.js';
import { activityHandlers, initialActivity, type ActivityState } from './user-activity.js';

export interface UserState {
  presence: PresenceState;
  activity: ActivityState;
}

export default defineActor({
  type: 'user',
  storage: 'durable',
  // The state is plain data (numbers, strings, arrays, records): json snapshots cost far less than v8's.
  snapshotCodec: 'json',
  idleTimeoutMs: 10 * 60_000,
  initialState: (): UserState => ({ presence: initialPresence(), activity: initialActivity() }),
  handlers: { ...presenceHandlers, ...activityHandlers },
  view: presenceView,
});
