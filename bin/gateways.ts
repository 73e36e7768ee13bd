// The five front doors a node can run, by name. The only place that knows all of them.

import type { Gateway } from '../runtime/index.js';
import { cartsGateway } from '../gateways/carts/index.js';
import { datingGateway } from '../gateways/dating/index.js';
import { eventsGateway } from '../gateways/events/index.js';
import { presenceGateway } from '../gateways/presence/index.js';
import { whoGateway } from '../gateways/who/index.js';

export const GATEWAYS: readonly Gateway[] = [presenceGateway, datingGateway, cartsGateway, whoGateway, eventsGateway];

/** Subcommands that gateways add to `troupe` (module under dist/, export `commands`). */
export const GATEWAY_COMMANDS: Record<string, string> = {
  dating: '../gateways/dating/commands.js',
  'dating-harness': '../gateways/dating/commands.js',
  'presence-client': '../gateways/presence/commands.js',
  'presence-count': '../gateways/presence/commands.js',
  migrate: '../gateways/carts/commands.js',
  'carts-token': '../gateways/carts/commands.js',
};
