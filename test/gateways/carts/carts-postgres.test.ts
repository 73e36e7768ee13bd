// The carts suite against the machine's PostgreSQL, in a schema of its own per run.
import test from 'ava';
import { registerSuite } from './suite.js';

registerSuite(test, 'postgres');
