// CRLF line splitting for the raw-socket SMTP peers of the tests: chunks in, complete lines out,
// with what is left of an unterminated line kept for the next chunk (or for a report at close).
export class LineSplitter {
  private buffered = '';

  /** The lines this chunk completes, without their CRLF. */
  push(chunk: string): string[] {
    this.buffered += chunk;
    const lines: string[] = [];
    let eol: number;
    while ((eol = this.buffered.indexOf('\r\n')) >= 0) {
      lines.push(this.buffered.slice(0, eol));
      this.buffered = this.buffered.slice(eol + 2);
    }
    return lines;
  }

  /** What arrived after the last CRLF. */
  get rest(): string {
    return this.buffered;
  }

  /** Drops the unterminated rest, e.g. when the stream turns into TLS. */
  clear(): void {
    this.buffered = '';
  }
}
