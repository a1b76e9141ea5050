// How intake refuses: an Error carrying the SMTP reply code, which smtp-server sends as
// `<code> <text>`. The text starts with the enhanced status code, since smtp-server's own are off.
export function smtpError(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}
