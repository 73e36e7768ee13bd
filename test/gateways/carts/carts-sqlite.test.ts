// The carts suite against the embedded SQLite store in a temporary data dir.
import test from 'ava';
import { registerSuite } from './suite.js';

registerSuite(test, 'sqlite');
