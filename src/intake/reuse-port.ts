// Whether this Node.js can listen with SO_REUSEPORT: net's `reusePort` option came in 22.12 (and 23.1);
// older versions ignore the option, and a second daemon on the port would fail with EADDRINUSE.
export function supportsReusePort(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}
