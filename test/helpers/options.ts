// Delivery options from a config written as an object, checked by the daemon's own schema, for
// unit tests of the parts that read options.
import { stringify } from 'yaml';
import { DeliveryOptions } from '../../src/config/delivery-options.js';
import { parseConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

export function configFrom(config: object): Config {
  const loaded = parseConfigText(stringify(config), 'test.yaml');
  if (!loaded.ok) throw new Error(`bad test config: ${loaded.errors.join('; ')}`);
  return loaded.config;
}

export function optionsFrom(config: object): DeliveryOptions {
  return new DeliveryOptions(configFrom(config));
}
