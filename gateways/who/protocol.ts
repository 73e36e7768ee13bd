// The WHO line protocol without sockets: cuts a byte stream into lines (bounded memory whatever the
// client sends) and reads each line as a command. The server feeds it chunks exactly as TCP delivers them.
//
// Rules (also in README.md):
// - a line ends at `\n`; a `\r` right before it is part of the terminator, anywhere else it is content;
// - spaces and tabs around the command are ignored, the command is ASCII and case-insensitive;
// - a blank line is not a command and gets no reply;
// - a line longer than `maxLine` bytes (terminator excluded) gets one error as soon as the limit is
//   passed, and the rest of it, up to the next `\n`, is dropped without being kept;
// - at end of stream an unterminated last line counts as a line (`printf WHO | nc host 4242` works).

export type Command = 'WHO' | 'WHERE' | 'WHY' | 'QUIT';

export const COMMANDS: readonly Command[] = ['WHO', 'WHERE', 'WHY', 'QUIT'];

/** What one line meant. `crlf`: the line ended in `\r\n`, so its reply should too. */
export type LineEvent =
  | { readonly kind: 'command'; readonly command: Command; readonly crlf: boolean }
  | { readonly kind: 'error'; readonly message: string; readonly crlf: boolean };

const LF = 10;
const CR = 13;
const SPACE = 32;
const TAB = 9;

// One frozen event per command and terminator, so the hot path allocates nothing per command.
const COMMAND_EVENTS = new Map<string, readonly [LineEvent, LineEvent]>(
  COMMANDS.map((c) => [c, [{ kind: 'command', command: c, crlf: false }, { kind: 'command', command: c, crlf: true }]]),
);

/** Up to 32 bytes of what the client sent, printable ASCII kept and the rest escaped, for error lines. */
export function quoteForError(bytes: Uint8Array, start = 0, end = bytes.length): string {
  const limit = Math.min(end, start + 32);
  let out = '"';
  for (let i = start; i < limit; i++) {
    const b = bytes[i]!;
    if (b === 0x22 || b === 0x5c) out += '\\' + String.fromCharCode(b);
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += '\\x' + b.toString(16).padStart(2, '0');
  }
  return out + (end > limit ? '..."' : '"');
}

function isBlank(b: number): boolean {
  return b === SPACE || b === TAB;
}

/** The meaning of one complete line's content (terminator already removed); undefined for a blank line. */
export function interpretLine(line: Uint8Array, start: number, end: number, crlf: boolean): LineEvent | undefined {
  while (start < end && isBlank(line[start]!)) start++;
  while (end > start && isBlank(line[end - 1]!)) end--;
  if (start === end) return undefined;
  let word = start;
  while (word < end && !isBlank(line[word]!)) word++;
  // Only ASCII letters are folded, so no other byte can ever turn into a command name.
  let name = '';
  if (word - start <= 5) {
    for (let i = start; i < word; i++) {
      const b = line[i]!;
      name += String.fromCharCode(b >= 0x61 && b <= 0x7a ? b - 32 : b);
    }
  }
  const known = COMMAND_EVENTS.get(name);
  if (known && word === end) return known[crlf ? 1 : 0];
  if (known) return { kind: 'error', message: `${name} takes no arguments`, crlf };
  return { kind: 'error', message: `unknown command ${quoteForError(line, start, end)}; expected WHO, WHERE, WHY or QUIT`, crlf };
}

/**
 * Cuts a stream into lines. Holds at most `maxLine + 1` bytes of an unfinished line (the `+ 1` is a
 * `\r` whose `\n` is still on its way), so a client cannot make it buffer more by never sending `\n`.
 */
export class LineReader {
  readonly maxLine: number;
  #parts: Buffer[] = [];
  #held = 0;
  /** Inside an over-long line whose error was already reported: drop bytes until `\n`. */
  #discarding = false;
  /** Terminator style of the last complete line, for replies not tied to one line. */
  crlf = false;

  constructor(maxLine: number) {
    if (!Number.isInteger(maxLine) || maxLine < 1) throw new RangeError(`maxLine must be a positive whole number, got ${maxLine}`);
    this.maxLine = maxLine;
  }

  #tooLong(crlf: boolean): LineEvent {
    return { kind: 'error', message: `line too long (more than ${this.maxLine} bytes); line discarded`, crlf };
  }

  /** Feeds one chunk; calls `sink` once per line, in order. */
  push(chunk: Buffer, sink: (event: LineEvent) => void): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(LF, start);
      if (nl < 0) {
        this.#hold(chunk, start, sink);
        return;
      }
      if (this.#discarding) {
        this.#discarding = false;
        // The error went out when the limit was passed; its terminator style was a guess, now known.
        this.crlf = nl > 0 ? chunk[nl - 1] === CR : false;
        start = nl + 1;
        continue;
      }
      const length = this.#held + (nl - start);
      let event: LineEvent | undefined;
      if (this.#held === 0) {
        event = this.#complete(chunk, start, nl);
      } else if (length > this.maxLine + 1) {
        // Do not even join the pieces of a line we are going to refuse.
        const crlf = chunk[nl - 1] === CR || (nl === start && this.#parts[this.#parts.length - 1]!.at(-1) === CR);
        this.#dropHeld();
        event = this.#tooLong(crlf);
        this.crlf = crlf;
      } else {
        this.#parts.push(chunk.subarray(start, nl));
        const line = Buffer.concat(this.#parts, length);
        this.#dropHeld();
        event = this.#complete(line, 0, line.length);
      }
      start = nl + 1;
      if (event) sink(event);
    }
  }

  /** The stream ended: an unterminated last line counts as a line. */
  end(sink: (event: LineEvent) => void): void {
    if (this.#discarding || this.#held === 0) {
      this.#discarding = false;
      this.#dropHeld();
      return;
    }
    const line = Buffer.concat(this.#parts, this.#held);
    this.#dropHeld();
    const event = this.#complete(line, 0, line.length);
    if (event) sink(event);
  }

  /** Bytes of an unfinished line held now (for tests and metrics). */
  get heldBytes(): number {
    return this.#held;
  }

  #complete(line: Uint8Array, start: number, end: number): LineEvent | undefined {
    const crlf = end > start && line[end - 1] === CR;
    if (crlf) end--;
    this.crlf = crlf;
    if (end - start > this.maxLine) return this.#tooLong(crlf);
    return interpretLine(line, start, end, crlf);
  }

  #hold(chunk: Buffer, start: number, sink: (event: LineEvent) => void): void {
    if (this.#discarding) return;
    const n = chunk.length - start;
    const total = this.#held + n;
    if (total > this.maxLine + 1 || (total === this.maxLine + 1 && chunk[chunk.length - 1] !== CR)) {
      this.#dropHeld();
      this.#discarding = true;
      sink(this.#tooLong(this.crlf));
      return;
    }
    // A copy: a view would pin the whole (up to 64 KiB) socket chunk for a few bytes.
    this.#parts.push(Buffer.from(chunk.subarray(start)));
    this.#held = total;
  }

  #dropHeld(): void {
    this.#parts = [];
    this.#held = 0;
  }
}
