// A URL key of the configuration: one of the given schemes, with a host.
import { z } from 'zod';

/** `schemes` as URL protocols (`redis:`); `message` names them with an example, for the operator. */
export function urlOf(schemes: readonly string[], message: string) {
  return z.string().refine((v) => {
    try {
      const u = new URL(v);
      return schemes.includes(u.protocol) && u.hostname !== '';
    } catch {
      return false;
    }
  }, { message });
}
