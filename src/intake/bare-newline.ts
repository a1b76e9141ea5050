// SMTP smuggling defence (Postfix's smtpd_forbid_bare_newline): DATA with a <LF> not preceded
// by <CR>, or a <CR> not followed by <LF>, is refused whole. smtp-server ends DATA only on
// <CR><LF>.<CR><LF>, but a receiver further on may end it on a variant such as <LF>.<LF>; a
// second message hidden behind that variant would then be delivered in the sender's name. Every
// known variant contains a bare <CR> or <LF>, so refusing those refuses them all, and RFC 5321
// §2.3.8 forbids bare ones anyway.

const CR = 0x0d;
const LF = 0x0a;

export interface BareNewline {
  kind: 'CR' | 'LF';
  /** Byte offset in the message data (after dot-unstuffing). */
  offset: number;
}

/** Fed the DATA stream chunk by chunk; remembers the first bare <CR> or <LF>. */
export class BareNewlineDetector {
  private offset = 0;
  private pendingCR = false;
  found: BareNewline | undefined;

  update(chunk: Buffer): void {
    if (this.found || chunk.length === 0) return;
    if (this.pendingCR && chunk[0] !== LF) {
      this.found = { kind: 'CR', offset: this.offset - 1 };
      return;
    }
    let first: BareNewline | undefined;
    for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) {
      if (i === 0 ? !this.pendingCR : chunk[i - 1] !== CR) {
        first = { kind: 'LF', offset: this.offset + i };
        break;
      }
    }
    const crLimit = first ? first.offset - this.offset : chunk.length - 1;
    for (let i = chunk.indexOf(CR); i >= 0 && i < crLimit; i = chunk.indexOf(CR, i + 1)) {
      if (chunk[i + 1] !== LF) {
        first = { kind: 'CR', offset: this.offset + i };
        break;
      }
    }
    this.found = first;
    this.pendingCR = chunk[chunk.length - 1] === CR;
    this.offset += chunk.length;
  }

  /** The end of the data: a final <CR> with nothing after it is bare too. */
  end(): BareNewline | undefined {
    if (!this.found && this.pendingCR) this.found = { kind: 'CR', offset: this.offset - 1 };
    return this.found;
  }
}
