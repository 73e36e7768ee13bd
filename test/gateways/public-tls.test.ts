// TLS on the public gateways: the settings (both or neither, files checked at start with messages a
// person can act on), and a client that trusts the certificate gets through presence, carts and
// events, while a plaintext client does not.

import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { startCartsServer } from '../../gateways/carts/server.js';
import { serviceOf } from '../../gateways/carts/protos.js';
import { startDoor } from './events/helpers.js';
import { presenceProto } from '../../gateways/presence/proto.js';
import { PresenceServer } from '../../gateways/presence/server.js';
import { publicTlsFrom } from '../../gateways/public-tls.js';
import { rootLogger } from '../../runtime/log.js';
import { NO_OPENSSL, selfSigned } from './tls-fixture.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';
const log = rootLogger();

function unary<T>(client: grpc.Client, method: string, req: unknown, md = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) =>
    (client as any)[method](req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, reply: T) => (err ? reject(err) : resolve(reply))),
  );
}

test('settings: neither is plaintext; one alone, a missing file, not PEM, another key are refused by name', (t) => {
  t.is(publicTlsFrom({}, 'carts'), undefined);
  t.throws(() => publicTlsFrom({ 'carts-tls-cert': '/x/cert.pem' }, 'carts'), { message: /setting carts-tls-key: --carts-tls-cert is set but --carts-tls-key is not/ });
  t.throws(() => publicTlsFrom({ 'events-tls-key': '/x/key.pem' }, 'events'), { message: /setting events-tls-cert: --events-tls-key is set/ });
  const a = selfSigned(t);
  if (!a) return t.log(NO_OPENSSL);
  const b = selfSigned(t)!;
  t.throws(() => publicTlsFrom({ 'presence-tls-cert': join(a.dir, 'nope.pem'), 'presence-tls-key': a.keyFile }, 'presence'), { message: /presence-tls-cert: the file .*nope\.pem does not exist/ });
  const der = join(a.dir, 'der.bin');
  writeFileSync(der, Buffer.from([0x30, 0x82, 0x01, 0x0a]));
  t.throws(() => publicTlsFrom({ 'presence-tls-cert': der, 'presence-tls-key': a.keyFile }, 'presence'), { message: /holds no PEM certificate/ });
  t.throws(() => publicTlsFrom({ 'presence-tls-cert': a.certFile, 'presence-tls-key': a.certFile }, 'presence'), { message: /presence-tls-key: .* holds no PEM private key/ });
  t.throws(() => publicTlsFrom({ 'carts-tls-cert': a.certFile, 'carts-tls-key': b.keyFile }, 'carts'), { message: /is not the key of the certificate/ });
  t.throws(() => publicTlsFrom({ 'carts-tls-cert': a.certFile, 'carts-tls-key': a.keyFile }, 'carts', Date.now() + 10 * 24 * 3_600_000), { message: /expired at .*; renew it/ });
  const ok = publicTlsFrom({ 'carts-tls-cert': a.certFile, 'carts-tls-key': a.keyFile }, 'carts')!;
  t.true(ok.cert.equals(a.cert));
  t.regex(ok.warning ?? '', /expires at/, 'a certificate of 2 days is near its end');
});

test('presence over TLS: a client trusting the certificate reads the online count; a plaintext one fails', async (t) => {
  const cert = selfSigned(t);
  if (!cert) return t.log(NO_OPENSSL);
  const presence = new PresenceServer({ sink: { reporter: () => () => {}, onlineUsers: async () => 7 }, log, tls: cert });
  const port = await presence.listen('127.0.0.1', 0);
  t.teardown(() => presence.stop(100));
  const { StatusReaderClient } = presenceProto();
  const secure = new StatusReaderClient(`localhost:${port}`, grpc.credentials.createSsl(cert.cert));
  const plain = new StatusReaderClient(`localhost:${port}`, grpc.credentials.createInsecure());
  t.teardown(() => (secure.close(), plain.close()));
  t.is((await unary<{ online_users: number }>(secure, 'FetchOnlineUsersInLast3Mins', {})).online_users, 7);
  await t.throwsAsync(unary(plain, 'FetchOnlineUsersInLast3Mins', {}), { message: /UNAVAILABLE|14/ });
});

test('carts over TLS: a call reaches the token check (UNAUTHENTICATED), so the handshake went through', async (t) => {
  const cert = selfSigned(t);
  if (!cert) return t.log(NO_OPENSSL);
  const carts = await startCartsServer('127.0.0.1:0', { store: {} as never, carts: {} as never, secret: 'x'.repeat(32), log, tls: cert });
  t.teardown(() => carts.stop());
  const Item = serviceOf('item', 'Item');
  const secure = new Item(`localhost:${carts.port}`, grpc.credentials.createSsl(cert.cert));
  const plain = new Item(`localhost:${carts.port}`, grpc.credentials.createInsecure());
  t.teardown(() => (secure.close(), plain.close()));
  const e = (await t.throwsAsync(unary(secure, 'Get', { item_uuid: '00000000-0000-4000-8000-000000000001' }))) as grpc.ServiceError;
  t.is(e.code, grpc.status.UNAUTHENTICATED, e.details);
  const p = (await t.throwsAsync(unary(plain, 'Get', { item_uuid: '00000000-0000-4000-8000-000000000001' }))) as grpc.ServiceError;
  t.is(p.code, grpc.status.UNAVAILABLE);
});

test('events over HTTPS: GET /health answers a client trusting the certificate; a client that never handshakes is cut', async (t) => {
  const cert = selfSigned(t);
  if (!cert) return t.log(NO_OPENSSL);
  const server = await startDoor(t, { maxPendingEnqueues: 10, tls: cert, maxConnections: 8, headersTimeoutMs: 300, log });
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', servername: 'localhost', port: server.port, path: '/health', ca: cert.cert, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
  t.is(answer.status, 200);
  t.is(JSON.parse(answer.body).status, 'ok');
  // Plain HTTP to the HTTPS port gets no HTTP answer.
  const plain = await fetch(`http://127.0.0.1:${server.port}/health`).then((r) => r.status, () => 'refused');
  t.not(plain, 200);
  // A connection that sends nothing, not even a TLS hello, is closed after the headers timeout.
  const silent = connect(server.port, '127.0.0.1');
  t.teardown(() => silent.destroy());
  silent.on('error', () => {});
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 15_000);
    silent.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  t.true(closed, 'a silent TLS connection still open after 15 s');
});
