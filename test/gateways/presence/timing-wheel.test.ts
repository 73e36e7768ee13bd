// The ping wheel: every member fires once per period, a new member one period after it joined,
// late ticks catch up, and removal takes effect at once. Driven by a hand-moved clock.

import test from 'ava';
import fc from 'fast-check';
import { TimingWheel } from '../../../gateways/presence/timing-wheel.js';

function wheelAt(start: number, slots = 100) {
  let now = start;
  const fired: { member: string; at: number }[] = [];
  const wheel = new TimingWheel<string>({ periodMs: 1000, slots, clock: () => now, fire: (member, at) => fired.push({ member, at }) });
  return {
    wheel,
    fired,
    moveTo(t: number) {
      now = t;
      wheel.advance(t);
    },
  };
}

test('a member fires one period after joining, then once every period', (t) => {
  const w = wheelAt(10_000);
  w.moveTo(10_250);
  w.wheel.add('a');
  w.moveTo(11_240);
  t.deepEqual(w.fired, []);
  w.moveTo(11_250);
  t.deepEqual(w.fired.map((f) => f.member), ['a']);
  for (let t2 = 11_260; t2 <= 14_250; t2 += 10) w.moveTo(t2);
  t.deepEqual(
    w.fired.map((f) => f.at),
    [11_250, 12_250, 13_250, 14_250],
  );
});

test('members spread over the period by the time they joined', (t) => {
  const w = wheelAt(0);
  for (let i = 0; i < 10; i++) {
    w.moveTo(i * 100);
    w.wheel.add(`m${i}`);
  }
  w.fired.length = 0;
  for (let t2 = 1000; t2 < 2000; t2 += 10) w.moveTo(t2);
  t.is(w.fired.length, 10);
  t.deepEqual(
    w.fired.map((f) => f.at),
    Array.from({ length: 10 }, (_, i) => 1000 + i * 100),
  );
});

test('a late tick fires every slot it missed, and a stall longer than a period fires each member once', (t) => {
  const w = wheelAt(0);
  for (let i = 0; i < 5; i++) {
    w.moveTo(i * 200);
    w.wheel.add(`m${i}`);
  }
  w.fired.length = 0;
  w.moveTo(1500);
  t.deepEqual(w.fired.map((f) => f.member), ['m0', 'm1', 'm2']);
  w.fired.length = 0;
  w.moveTo(60_000);
  t.deepEqual(w.fired.map((f) => f.member).sort(), ['m0', 'm1', 'm2', 'm3', 'm4']);
});

test('removed members never fire; members removed or added while a slot fires are handled', (t) => {
  let now = 0;
  const fired: string[] = [];
  const wheel: TimingWheel<string> = new TimingWheel<string>({
    periodMs: 1000,
    slots: 10,
    clock: () => now,
    fire: (m) => {
      fired.push(m);
      if (m === 'a') {
        wheel.remove('b');
        wheel.add('c');
      }
    },
  });
  wheel.add('a');
  wheel.add('b');
  wheel.add('gone');
  wheel.remove('gone');
  now = 1000;
  wheel.advance(now);
  t.deepEqual(fired, ['a']);
  t.true(wheel.has('c'));
  t.false(wheel.has('b'));
  t.is(wheel.size, 2);
  now = 2000;
  wheel.advance(now);
  t.deepEqual(fired, ['a', 'a', 'c']);
});

test('a fire callback that throws does not lose members that joined during the slot', (t) => {
  let now = 0;
  const wheel: TimingWheel<string> = new TimingWheel<string>({
    periodMs: 1000,
    slots: 10,
    clock: () => now,
    fire: () => {
      wheel.add('late');
      throw new Error('boom');
    },
  });
  wheel.add('a');
  now = 1000;
  t.throws(() => wheel.advance(now));
  t.true(wheel.has('late'));
});

test('property: over any run, each member fires once per period within one tick', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 40 }), fc.array(fc.integer({ min: 1, max: 250 }), { minLength: 50, maxLength: 200 }), (joins, steps) => {
      let now = 0;
      const times = new Map<number, number[]>();
      const wheel = new TimingWheel<number>({ periodMs: 1000, slots: 100, clock: () => now, fire: (m, at) => times.get(m)!.push(at) });
      const order = joins.map((at, i) => ({ at, i })).sort((a, b) => a.at - b.at);
      let next = 0;
      for (const step of steps) {
        const target = now + step;
        while (next < order.length && order[next]!.at <= target) {
          now = Math.max(now, order[next]!.at);
          wheel.advance(now);
          times.set(order[next]!.i, []);
          wheel.add(order[next]!.i);
          next++;
        }
        now = target;
        wheel.advance(now);
      }
      for (const fires of times.values()) {
        for (let k = 1; k < fires.length; k++) {
          // Firings follow the slot schedule: exactly one period apart in slot time; the fire time
          // passed is the tick's now, so allow for how late the tick ran (steps up to 250 ms).
          if (fires[k]! - fires[k - 1]! > 1000 + 260 || fires[k]! - fires[k - 1]! < 1000 - 260) return false;
        }
      }
      return true;
    }),
    { numRuns: 200 },
  );
  t.pass();
});
