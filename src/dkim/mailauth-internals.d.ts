// Types for the parts of mailauth 4.13 that Impulse composes into its DKIM signer; mailauth ships none for them.
declare module 'mailauth/lib/dkim/body/index.js' {
  interface BodyHasher {
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
  }
  export function dkimBody(canonicalization: string, hashAlgo: string, maxBodyLength: number | false): BodyHasher;
}

declare module 'mailauth/lib/tools.js' {
  export function parseHeaders(buf: Buffer): { parsed: Array<{ key: string | null; casedKey: string | undefined; line: Buffer }> };
}
