// `troupe migrate` (apply the carts schema migrations, then exit) and `troupe carts-token`
// (sign a bearer token for a user, optionally with the admin role).

import { randomUUID } from 'node:crypto';
import { catalogueOptionsFromSettings, openCatalogue } from '../../actors/catalogue.js';
import type { SettingSpec, SettingValues } from '../../runtime/index.js';
import { cartsSecretFrom, signToken } from './auth.js';
import { CARTS_SETTINGS } from './index.js';

const DATA_DIR: SettingSpec = { name: 'data-dir', kind: 'string', default: './data/carts', description: 'data directory holding the SQLite store (when no --postgres)' };

const storeSettings = CARTS_SETTINGS.filter((s) => s.name === 'postgres' || s.name === 'carts-schema');

export const commands = {
  migrate: {
    summary: 'apply the carts schema migrations (PostgreSQL with --postgres, else SQLite in --data-dir) and exit',
    settings: [...storeSettings, DATA_DIR],
    async run(values: SettingValues): Promise<number> {
      const dataDir = String(values['data-dir']);
      const store = await openCatalogue({ ...catalogueOptionsFromSettings(values, dataDir), poolSize: 1 });
      try {
        const applied = await store.migrate();
        const where = store.kind === 'postgres' ? `PostgreSQL schema ${String(values['carts-schema'] ?? 'public')}` : `SQLite in ${dataDir}`;
        process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')} to ${where}\n` : `${where} is up to date\n`);
        return 0;
      } catch (err) {
        process.stderr.write(`migrate failed: ${(err as Error).message}\n`);
        return 1;
      } finally {
        await store.close();
      }
    },
  },
  'carts-token': {
    summary: 'print a carts bearer token: [--user UUID] [--admin] [--ttl 1h] (signed with --carts-secret-file, else the node\'s development secret in --data-dir)',
    settings: [
      ...CARTS_SETTINGS.filter((s) => s.name === 'carts-secret-file' || s.name === 'carts-secret'),
      DATA_DIR,
      { name: 'user', kind: 'string', default: undefined, description: 'the user uuid the token names (default: a new uuid)' },
      { name: 'admin', kind: 'bool', default: false, description: 'grant the admin role (item writes)' },
      { name: 'ttl', kind: 'duration', default: 3_600_000, min: 1000, description: 'how long the token is valid' },
    ] satisfies SettingSpec[],
    async run(values: SettingValues): Promise<number> {
      const user = typeof values['user'] === 'string' ? values['user'] : randomUUID();
      try {
        const { secret, warnings } = cartsSecretFrom(values, String(values['data-dir']));
        for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
        const token = signToken(secret, user, { roles: values['admin'] ? ['admin'] : [], ttlSeconds: Math.ceil(Number(values['ttl']) / 1000) });
        process.stdout.write(token + '\n');
        return 0;
      } catch (err) {
        process.stderr.write(`${(err as Error).message}\n`);
        return 1;
      }
    },
  },
};
