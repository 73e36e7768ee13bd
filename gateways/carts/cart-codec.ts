// The Cart service's replies (`{ result: CartMsg }`) encoded straight from a CartView into
// protobuf bytes: the hot path of every Cart RPC. protobufjs builds the message object, converts it
// (fromObject) and encodes it; this writes the same bytes in one sized pass. Field numbers are the
// contract's (protos/sedeo/cart/cart.proto, item/item.proto, type/address.proto); proto3 defaults
// (empty strings, zeros, absent messages) are not written, as protobufjs does not write them.
// Tested byte for byte against protobufjs in test/gateways/carts/cart-codec.test.ts.

import type { AddressRecord, ItemRecord } from '../../actors/catalogue.js';
import { minorToPrice } from '../../actors/catalogue.js';
import type { CartView } from '../../actors/cart-operations.js';

const LEN = 2; // wire type of strings and messages
const I64 = 1; // wire type of doubles

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function tagSize(field: number): number {
  return varintSize(field << 3);
}

/** Bytes of a length-delimited field whose body is `body` bytes. */
function delimitedSize(field: number, body: number): number {
  return tagSize(field) + varintSize(body) + body;
}

function stringSize(field: number, s: string): number {
  return s === '' ? 0 : delimitedSize(field, Buffer.byteLength(s));
}

/** Timestamp{seconds, nanos} of a time in ms since the epoch; 0 means no timestamp at all. */
function timestampBodySize(ms: number): number {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms % 1000) * 1_000_000;
  return (seconds ? 1 + varintSize(seconds) : 0) + (nanos ? 1 + varintSize(nanos) : 0);
}

function timestampSize(field: number, ms: number): number {
  return ms ? delimitedSize(field, timestampBodySize(ms)) : 0;
}

function doubleSize(field: number, v: number): number {
  return v === 0 && !Object.is(v, -0) ? 0 : tagSize(field) + 8;
}

function itemBodySize(item: ItemRecord): number {
  return (
    stringSize(1, item.uuid) +
    stringSize(2, item.name) +
    stringSize(4, item.description) +
    doubleSize(7, minorToPrice(item.priceMinor)) +
    timestampSize(40, item.created) +
    timestampSize(41, item.updated)
  );
}

function entryBodySize(itemBody: number, quantity: number): number {
  return delimitedSize(1, itemBody) + (quantity ? 1 + varintSize(quantity) : 0);
}

function addressBodySize(a: AddressRecord): number {
  return (
    stringSize(1, a.uuid) +
    stringSize(2, a.line1) +
    stringSize(3, a.line2) +
    stringSize(4, a.line3) +
    stringSize(5, a.city) +
    stringSize(6, a.province) +
    stringSize(7, a.zipCode) +
    stringSize(8, a.countryCode) +
    stringSize(9, a.other) +
    timestampSize(40, a.updated) +
    timestampSize(41, a.created)
  );
}

class Writer {
  readonly buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  string(field: number, s: string): void {
    if (s === '') return;
    const length = Buffer.byteLength(s);
    this.tag(field, LEN);
    this.varint(length);
    this.pos += this.buf.write(s, this.pos, length, 'utf8');
  }

  double(field: number, v: number): void {
    if (v === 0 && !Object.is(v, -0)) return;
    this.tag(field, I64);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /** The header of a nested message whose body is `body` bytes. */
  open(field: number, body: number): void {
    this.tag(field, LEN);
    this.varint(body);
  }

  timestamp(field: number, ms: number): void {
    if (!ms) return;
    const seconds = Math.floor(ms / 1000);
    const nanos = (ms % 1000) * 1_000_000;
    this.open(field, timestampBodySize(ms));
    if (seconds) {
      this.tag(1, 0);
      this.varint(seconds);
    }
    if (nanos) {
      this.tag(2, 0);
      this.varint(nanos);
    }
  }
}

function writeItem(w: Writer, item: ItemRecord): void {
  w.string(1, item.uuid);
  w.string(2, item.name);
  w.string(4, item.description);
  w.double(7, minorToPrice(item.priceMinor));
  w.timestamp(40, item.created);
  w.timestamp(41, item.updated);
}

function writeAddress(w: Writer, a: AddressRecord): void {
  w.string(1, a.uuid);
  w.string(2, a.line1);
  w.string(3, a.line2);
  w.string(4, a.line3);
  w.string(5, a.city);
  w.string(6, a.province);
  w.string(7, a.zipCode);
  w.string(8, a.countryCode);
  w.string(9, a.other);
  w.timestamp(40, a.updated);
  w.timestamp(41, a.created);
}

/**
 * `{ result: CartMsg }`: the reply of every Cart RPC (CartGetResultMsg, CartAddItemResultMsg, ...
 * all have the cart as field 1), as protobuf bytes.
 */
export function encodeCartResult(cart: CartView): Buffer {
  const itemBodies = cart.entries.map((e) => itemBodySize(e.item));
  const entryBodies = cart.entries.map((e, i) => entryBodySize(itemBodies[i]!, e.quantity));
  const addressBody = cart.address ? addressBodySize(cart.address) : 0;
  const configurationBody = cart.address ? delimitedSize(1, addressBody) : 0;
  let cartBody = stringSize(1, cart.uuid) + stringSize(2, cart.userUuid);
  for (const body of entryBodies) cartBody += delimitedSize(3, body);
  if (cart.address) cartBody += delimitedSize(4, configurationBody);
  cartBody += doubleSize(5, minorToPrice(cart.priceTotalMinor)) + timestampSize(40, cart.created) + timestampSize(41, cart.updated);

  const w = new Writer(delimitedSize(1, cartBody));
  w.open(1, cartBody);
  w.string(1, cart.uuid);
  w.string(2, cart.userUuid);
  cart.entries.forEach((e, i) => {
    w.open(3, entryBodies[i]!);
    w.open(1, itemBodies[i]!);
    writeItem(w, e.item);
    if (e.quantity) {
      w.tag(2, 0);
      w.varint(e.quantity);
    }
  });
  if (cart.address) {
    w.open(4, configurationBody);
    w.open(1, addressBody);
    writeAddress(w, cart.address);
  }
  w.double(5, minorToPrice(cart.priceTotalMinor));
  w.timestamp(40, cart.created);
  w.timestamp(41, cart.updated);
  if (w.pos !== w.buf.length) throw new Error(`cart codec wrote ${w.pos} bytes of the ${w.buf.length} it sized`);
  return w.buf;
}
