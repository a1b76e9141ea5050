// The one error type of Impulse. Every failure carries a stable code and the SMTP reply it
// ends as; `temporary` follows from the reply class so the two can never disagree.
import { type Reply, formatReply, isTemporary } from './reply.js';

export class ImpulseError extends Error {
  readonly code: string;
  readonly reply: Reply;

  constructor(code: string, reply: Reply, options?: { cause?: unknown }) {
    super(formatReply(reply), options);
    this.name = 'ImpulseError';
    this.code = code;
    this.reply = reply;
  }

  get temporary(): boolean {
    return isTemporary(this.reply);
  }
}
