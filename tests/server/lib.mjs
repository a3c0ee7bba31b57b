// Helpers shared by the server tests: where things are (from the environment
// tests/cli/test_server.sh sets), the CLI as the reference, raw HTTP, checks.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';

export const env = {
  tycho: process.env.TYCHO_BIN,              // build/bin/tycho
  url: process.env.TYCHO_URL,                // http://127.0.0.1:PORT
  data: process.env.TYCHO_DATA,              // tests/data
  mode: process.env.TYCHO_MODE || 'full',    // full | quick (sanitizer builds)
  seed: process.env.TYCHO_SEED || '7',       // the server's --seed
  maxTokens: process.env.TYCHO_MAX_TOKENS || '768',  // the server's --max-tokens
  pid: Number(process.env.TYCHO_PID || 0),   // the server's process
  tmp: process.env.TYCHO_TMP || '/tmp',
};
export const model = `${env.data}/golden/md2-tiny`;
export const image = (name) => `${env.data}/golden/images/${name}`;
export const quick = env.mode === 'quick';

let failures = 0, checks = 0;
export function check(ok, ...what) {
  checks++;
  if (!ok) {
    failures++;
    console.log('FAIL', ...what.map((w) => (typeof w === 'string' ? w : JSON.stringify(w)?.slice(0, 600))));
  }
  return ok;
}
export function equal(got, want, ...what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  return check(g === w, ...what, 'got', got, 'want', want);
}
export function report(name) {
  console.log(`${name}: ${checks} checks, ${failures} failures`);
  process.exitCode = failures ? 1 : 0;
}

export function dataUri(path) {
  const ext = path.endsWith('.jpg') || path.endsWith('.jpeg') ? 'jpeg' : 'png';
  return `data:image/${ext};base64,${fs.readFileSync(path).toString('base64')}`;
}

// The CLI's answer (--json) for the same input: the reference every server result must equal.
export function cli(skill, args) {
  const out = execFileSync(env.tycho, [skill, '--model', model, '--json', '--threads', '2', ...args], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out);
}

// One raw HTTP request; resolves {status, headers, text, json} (json null when the body is not JSON).
export function request(method, path, { body, headers = {}, agent } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const h = { ...headers };
    if (data !== undefined && !('Content-Length' in h) && !('Transfer-Encoding' in h)) h['Content-Length'] = Buffer.byteLength(data);
    const req = http.request(env.url + path, { method, headers: h, agent }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

// The parsed "data:" events of an SSE body.
export function sseEvents(text) {
  return text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
}

export async function metric(name) {
  const r = await request('GET', '/metrics');
  const line = r.text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : NaN;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
