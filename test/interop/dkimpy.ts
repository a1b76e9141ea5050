// Verifies DKIM signatures with dkimpy (Debian's python3-dkim), a verifier independent of the mailauth code Impulse signs with.
//
// dkimpy checks one signature per call (DKIM.verify(idx)), so the script checks every index of
// every message and reports each verdict with the tags it read and the reason dkimpy gave. Key
// records come from the test through dkimpy's dnsfunc argument, as JSON in the environment: no
// DNS is involved, and a selector the test did not publish is a missing key, as in DNS.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestDkimKey } from '../helpers/dkim.js';
import { runToEnd } from '../helpers/run.js';

// The system interpreter: python3-dkim goes into its dist-packages, and a python3 earlier on the
// PATH (pyenv, a venv) would not see it.
const PYTHON = '/usr/bin/python3';

const SCRIPT = String.raw`
import dkim, importlib.metadata, json, logging, os, sys

records = json.loads(os.environ['DKIMPY_RECORDS'])

def dnsfunc(name, timeout=5):
    txt = records.get(name.decode('ascii').rstrip('.').lower())
    return None if txt is None else txt.encode('ascii')

class Notes(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []
    def emit(self, record):
        self.lines.append(record.getMessage())

notes = Notes()
logger = logging.getLogger('dkimpy-interop')
logger.setLevel(logging.INFO)
logger.addHandler(notes)

messages = []
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        message = f.read()
    entry = {'file': path, 'signatures': []}
    try:
        d = dkim.DKIM(message, logger=logger)
    except dkim.DKIMException as e:
        entry['error'] = '%s: %s' % (type(e).__name__, e)
        messages.append(entry)
        continue
    count = sum(1 for name, _ in d.headers if name.lower() == b'dkim-signature')
    for idx in range(count):
        notes.lines = []
        d.signature_fields = {}
        sig = {'idx': idx}
        try:
            sig['pass'] = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException as e:
            sig['pass'] = False
            notes.lines.append('%s: %s' % (type(e).__name__, e))
        for tag in ('d', 's', 'a'):
            sig[tag] = d.signature_fields.get(tag.encode(), b'').decode('ascii', 'replace')
        sig['notes'] = notes.lines
        entry['signatures'].append(sig)
    messages.append(entry)

json.dump({'version': importlib.metadata.version('dkimpy'), 'messages': messages}, sys.stdout)
`;

export type DkimpySignature = {
  idx: number;
  pass: boolean;
  /** The d=, s= and a= tags as dkimpy read them. */
  d: string;
  s: string;
  a: string;
  /** Why it failed, as dkimpy raised or logged it (e.g. `ValidationError: body hash mismatch ...`). */
  notes: string[];
};

export type DkimpyVerdict = {
  /** Set when dkimpy could not parse the message at all. */
  error?: string;
  signatures: DkimpySignature[];
};

/** One verdict per message, in order, every DKIM-Signature of each checked on its own; and dkimpy's version. */
export async function dkimpyVerify(messages: Buffer[], keys: readonly TestDkimKey[]): Promise<{ version: string; verdicts: DkimpyVerdict[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'impulse-dkimpy-'));
  try {
    const files = messages.map((m, i) => {
      const file = join(dir, `message-${i}.eml`);
      writeFileSync(file, m);
      return file;
    });
    const records = Object.fromEntries(keys.map((k) => [k.name.toLowerCase(), k.txt]));
    const r = await runToEnd(PYTHON, ['-c', SCRIPT, ...files], {
      timeoutMs: 120_000, env: { DKIMPY_RECORDS: JSON.stringify(records) }, what: 'dkimpy',
    });
    if (r.code !== 0) throw new Error(`dkimpy exited with ${r.code}:\n${r.stderr}`);
    const out = JSON.parse(r.stdout) as { version: string; messages: Array<DkimpyVerdict & { file: string }> };
    return { version: out.version, verdicts: out.messages.map(({ file: _file, ...verdict }) => verdict) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
