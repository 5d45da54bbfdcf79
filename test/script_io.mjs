// What the Node scripts the Go tests drive (e2e/client.mjs,
// e2e/modern_client.mjs, e2e/lists_client.mjs, e2e/credentials_client.mjs,
// replicas/client.mjs) share: the line protocol with the
// test (one JSON object per line on stdout, each answered on stdin) and the
// readings of SDK results and errors.
import readline from 'node:readline';

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

export function say(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

export async function ask(obj) {
  say(obj);
  const { value, done } = await lines.next();
  if (done) throw new Error('the test closed stdin');
  return JSON.parse(value);
}

// text joins the text parts of a tool result.
export function text(result) {
  return result.content.filter((p) => p.type === 'text').map((p) => p.text).join('\n');
}

// describeError keeps what the test checks of an SDK error: its class,
// code and message, and the JSON-RPC body when the message carries one
// (the SDKs quote the HTTP body of a refused request).
export function describeError(err) {
  const out = { name: err?.constructor?.name, code: err?.code, message: String(err?.message ?? err) };
  const i = out.message.indexOf('{');
  if (i >= 0) {
    try { out.body = JSON.parse(out.message.slice(i)); } catch { /* not JSON */ }
  }
  return out;
}
