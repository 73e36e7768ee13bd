// Test fixture (not a test): a node with the presence gateway in a child process, so a test can
// SIGKILL it. Prints `READY <port>`; reads `advance <ms>` lines on stdin to move its wall clock.
// Usage: node node-child.js <dataDir>

import { createInterface } from 'node:readline';
import { startPresenceNode } from './helpers.js';

const dataDir = process.argv[2];
if (!dataDir) {
  console.error('usage: node node-child.js <dataDir>');
  process.exit(2);
}
let offsetMs = 0;
const running = await startPresenceNode({ dataDir, clock: () => Date.now() + offsetMs });
createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, value] = line.trim().split(/\s+/);
  if (command === 'advance') {
    offsetMs += Number(value);
    console.log(`ADVANCED ${offsetMs}`);
  }
});
process.once('SIGTERM', () => {
  void running.stop().then(() => process.exit(0));
});
console.log(`READY ${running.gateway.ports.grpc}`);
