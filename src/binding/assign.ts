// Which binding (or group) a message's recipients at one domain leave from, decided at intake:
// the upstream MTA's X-Impulse-Binding / X-Impulse-Binding-Group header, then config rules (by
// sender or recipient domain), then the set_binding hook, else the default binding.
import { DEFAULT_BINDING, type Bindings } from './registry.js';

export interface BindingRule {
  sender_domain?: string | undefined;
  recipient_domain?: string | undefined;
  binding?: string | undefined;
  binding_group?: string | undefined;
}

export type BindingChoice = { binding: string } | { group: string };

type Assignment =
  | { kind: 'assigned'; choice: BindingChoice; source: 'header' | 'rule' | 'hook' | 'default'; note?: string }
  | { kind: 'refused'; note: string };

interface AssignmentInput {
  senderDomain: string;
  recipientDomain: string;
  header: BindingChoice | undefined;
  hook: () => Promise<BindingChoice | undefined>;
}

function known(bindings: Bindings, choice: BindingChoice): boolean {
  return 'binding' in choice ? bindings.get(choice.binding) !== undefined : bindings.hasGroup(choice.group);
}

function describe(choice: BindingChoice): string {
  return 'binding' in choice ? `binding "${choice.binding}"` : `binding group "${choice.group}"`;
}

function ruleChoice(rules: readonly BindingRule[], input: AssignmentInput): BindingChoice | undefined {
  for (const r of rules) {
    const matches = (r.sender_domain === undefined || r.sender_domain === input.senderDomain)
      && (r.recipient_domain === undefined || r.recipient_domain === input.recipientDomain);
    if (!matches) continue;
    if (r.binding) return { binding: r.binding };
    if (r.binding_group) return { group: r.binding_group };
  }
  return undefined;
}

/**
 * Momentum's default_binding: `normal` sends unassigned mail from the default binding; `none`
 * refuses it at intake with 451, so an operator finds an unassigned stream before it leaves.
 */
export async function assignBinding(
  input: AssignmentInput, rules: readonly BindingRule[], bindings: Bindings, defaultBinding: 'normal' | 'none',
): Promise<Assignment> {
  const fallback = (note?: string): Assignment => (defaultBinding === 'none'
    ? { kind: 'refused', note: note ?? 'no binding assigned and default_binding is none' }
    : { kind: 'assigned', choice: { binding: DEFAULT_BINDING }, source: 'default', ...(note ? { note } : {}) });

  if (input.header) {
    return known(bindings, input.header)
      ? { kind: 'assigned', choice: input.header, source: 'header' }
      : fallback(`unknown ${describe(input.header)} in header`);
  }
  const rule = ruleChoice(rules, input);
  if (rule) return { kind: 'assigned', choice: rule, source: 'rule' };
  const hooked = await input.hook();
  if (hooked) {
    return known(bindings, hooked)
      ? { kind: 'assigned', choice: hooked, source: 'hook' }
      : fallback(`unknown ${describe(hooked)} chosen by set_binding`);
  }
  return fallback();
}
