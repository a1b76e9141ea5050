// A message's envelope as delivery sends it: sender, recipients, and the ESMTP parameters of the
// transaction it was received in that travel with it to the next hop and into its DSNs.

/** RFC 3461 NOTIFY values. */
export type Notify = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

/** One recipient's DSN request: when to report, and the address as the sender first gave it. */
export interface RecipientDsn {
  notify?: Notify[] | undefined;
  /** ORCPT, xtext-decoded: address type, ';', address. */
  orcpt?: string | undefined;
}

/** What of MAIL FROM and RCPT TO is kept; each field is absent when the client did not give it. */
export interface EnvelopeParams {
  /** RFC 3461: what a DSN returns of the message, and the sender's own id for it. */
  ret?: 'FULL' | 'HDRS' | undefined;
  envid?: string | undefined;
  /** Received with BODY=8BITMIME (RFC 6152). */
  eightBit?: true | undefined;
  /** Received with SMTPUTF8 (RFC 6531). */
  smtputf8?: true | undefined;
  /** DSN requests of the recipients that made one, by recipient. */
  dsn?: Record<string, RecipientDsn> | undefined;
}

export interface Envelope {
  sender: string;
  recipients: readonly string[];
  body: Buffer;
  params: EnvelopeParams;
}
