// Types for the parts of mailauth 4.13 that Impulse composes into its DKIM signer; mailauth ships none for them.
declare module 'mailauth/lib/dkim/body/index.js' {
  interface BodyHasher {
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
  }
  export function dkimBody(canonicalization: string, hashAlgo: string, maxBodyLength: number | false): BodyHasher;
}

declare module 'mailauth/lib/dkim/header/index.js' {
  interface HeaderLine {
    key: string | null;
    casedKey: string | undefined;
    line: Buffer;
  }
  export function generateCanonicalizedHeader(
    type: 'DKIM',
    signingHeaderLines: { keys: string; headers: readonly HeaderLine[] },
    options: { signingDomain: string; selector: string; algorithm: string; canonicalization: string; bodyHash: string; signTime?: Date; expires?: Date },
  ): { canonicalizedHeader: Buffer; dkimHeaderOpts: Record<string, string | number> };
}

declare module 'mailauth/lib/tools.js' {
  export function parseHeaders(buf: Buffer): { parsed: Array<{ key: string | null; casedKey: string | undefined; line: Buffer }> };
  export function formatSignatureHeaderLine(type: 'DKIM', values: Record<string, string | number>, folded: boolean): string;
}
