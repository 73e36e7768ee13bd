// The carts workload of a chaos run: Cart/AddItem of quantity 1 over the public gRPC contract, to
// random running nodes, on a few carts and items. AddItem is not idempotent, so nothing is retried;
// each call is counted per (cart, item) as acknowledged (OK), refused (a status that says it was
// not applied) or ambiguous (anything else: a deadline, a dropped connection; it may have been).

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { randomUUID } from 'node:crypto';
import { protoPath } from '../../runtime/paths.js';
import type { LoadTarget } from './event-load.js';
import { sleep } from './node-process.js';

export interface CartLoadOptions {
  targets(): LoadTarget[];
  /** The bearer token of the user who owns the carts, and one with the admin role (Item/Create). */
  userToken: string;
  adminToken: string;
  addsPerSecond: number;
  concurrency: number;
  carts: number;
  items: number;
}

/** Adds of one item to one cart, by outcome. */
export interface LineCounts {
  acked: number;
  refused: number;
  ambiguous: number;
}

/** Past this a call counts as unanswered (a paused node may still apply it when it resumes). */
const CALL_DEADLINE_MS = 5000;
/** Statuses the carts service gives only before it changes anything. */
const NOT_APPLIED = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND, grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED, grpc.status.FAILED_PRECONDITION]);

type Unary = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;
interface Clients {
  cart: grpc.Client & { AddItem: Unary };
  item: grpc.Client & { Create: Unary };
}

function loadServices(): { Cart: grpc.ServiceClientConstructor; Item: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync([protoPath('sedeo', 'cart', 'cart.proto'), protoPath('sedeo', 'item', 'item.proto')], {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [protoPath()],
  });
  const pkg = grpc.loadPackageDefinition(definition);
  return { Cart: (pkg['cart'] as grpc.GrpcObject)['Cart'] as grpc.ServiceClientConstructor, Item: (pkg['item'] as grpc.GrpcObject)['Item'] as grpc.ServiceClientConstructor };
}

export class CartLoad {
  /** `cart|item` → counts. */
  readonly lines = new Map<string, LineCounts>();
  readonly answers = new Map<string, number>();
  /** The first details seen for each status other than OK, to tell what the failures were. */
  readonly failureExamples = new Map<string, string>();
  readonly carts: string[];
  items: string[] = [];
  readonly #o: CartLoadOptions;
  readonly #services = loadServices();
  readonly #clients = new Map<number, Clients>();
  #running = false;
  #loops: Promise<void>[] = [];
  #nextSlot = 0;

  constructor(options: CartLoadOptions) {
    this.#o = options;
    this.carts = Array.from({ length: options.carts }, () => randomUUID());
  }

  totals(): LineCounts {
    const t = { acked: 0, refused: 0, ambiguous: 0 };
    for (const c of this.lines.values()) {
      t.acked += c.acked;
      t.refused += c.refused;
      t.ambiguous += c.ambiguous;
    }
    return t;
  }

  /** Creates the items (admin), before any fault: a failure here is a failure to start the run. */
  async createItems(): Promise<void> {
    const target = this.#o.targets()[0];
    if (!target) throw new Error('no node is running to create the cart items on');
    const { item } = this.#clientsFor(target);
    for (let i = 0; i < this.#o.items; i++) {
      const res = await call<{ uuid: string }>(item.Create.bind(item), { name: `chaos item ${i + 1}`, description: 'made by troupe chaos', price: 1 + i }, this.#o.adminToken);
      this.items.push(res.uuid);
    }
  }

  start(): void {
    this.#running = true;
    this.#loops = Array.from({ length: this.#o.concurrency }, () => this.#loop());
  }

  /** Stops calling; resolves once every call in flight has its outcome. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    for (const c of this.#clients.values()) {
      c.cart.close();
      c.item.close();
    }
    this.#clients.clear();
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      await this.#slot();
      const targets = this.#o.targets();
      const target = targets[Math.floor(Math.random() * targets.length)];
      if (!target) {
        await sleep(100);
        continue;
      }
      const cart = this.carts[Math.floor(Math.random() * this.carts.length)]!;
      const item = this.items[Math.floor(Math.random() * this.items.length)]!;
      const key = `${cart}|${item}`;
      let counts = this.lines.get(key);
      if (!counts) this.lines.set(key, (counts = { acked: 0, refused: 0, ambiguous: 0 }));
      const { cart: client } = this.#clientsFor(target);
      try {
        await call(client.AddItem.bind(client), { cart_uuid: cart, item_uuid: item, quantity: 1 }, this.#o.userToken);
        counts.acked++;
        this.#count('OK');
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        if (NOT_APPLIED.has(code)) counts.refused++;
        else counts.ambiguous++;
        const label = grpc.status[code] ?? String(code);
        this.#count(label);
        if (!this.failureExamples.has(label)) this.failureExamples.set(label, (err as grpc.ServiceError).details ?? String(err));
      }
    }
  }

  async #slot(): Promise<void> {
    if (this.#o.addsPerSecond <= 0) return;
    const now = performance.now();
    const at = Math.max(this.#nextSlot, now);
    this.#nextSlot = at + 1000 / this.#o.addsPerSecond;
    if (at > now) await sleep(at - now);
  }

  #count(label: string): void {
    this.answers.set(label, (this.answers.get(label) ?? 0) + 1);
  }

  /** One client pair per node port; those of ports no longer served are closed. */
  #clientsFor(target: LoadTarget): Clients {
    const port = target.port;
    let c = this.#clients.get(port);
    if (!c) {
      const live = new Set(this.#o.targets().map((t) => t.port));
      for (const [p, old] of this.#clients) {
        if (live.has(p)) continue;
        old.cart.close();
        old.item.close();
        this.#clients.delete(p);
      }
      const address = `${target.host}:${port}`;
      c = {
        cart: new this.#services.Cart(address, grpc.credentials.createInsecure()) as unknown as Clients['cart'],
        item: new this.#services.Item(address, grpc.credentials.createInsecure()) as unknown as Clients['item'],
      };
      this.#clients.set(port, c);
    }
    return c;
  }
}

function call<T>(method: Unary, req: object, token: string): Promise<T> {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    method(req, md, { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) => (err ? reject(err) : resolve(res as T)));
  });
}
