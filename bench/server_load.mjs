// A bounded load test for `tycho serve`: N requests over C keep-alive
// connections, a fixed mix of every route (caption plain and streamed,
// query with and without an image, detect, point, chat plain and streamed)
// with small max_tokens, checking every answer. Prints requests/s and
// latency percentiles; with --pid, the server's RSS after the first and
// the second half of the requests.
//
//   node bench/server_load.mjs --url http://127.0.0.1:2020 [--requests 2000] [--concurrency 64]
//        [--images tests/data/golden/images] [--pid PID] [--json]
//
// Exit status 0 when every request succeeded, 1 otherwise. Node built-ins only.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
  return acc;
}, []));
const here = path.dirname(fileURLToPath(import.meta.url));
const url = new URL(args.url || 'http://127.0.0.1:2020');
const total = Number(args.requests || 2000);
const concurrency = Number(args.concurrency || 64);
const images = args.images || path.join(here, '../tests/data/golden/images');
const pid = Number(args.pid || 0);

const uri = (name) => 'data:image/png;base64,' + fs.readFileSync(path.join(images, name)).toString('base64');
const A = uri('c_96x64.png'), B = uri('b_378x378.png');
const S = { temperature: 0, max_tokens: 16 };
const chatMsg = (text, img) => [{ role: 'user', content: img ? [{ type: 'text', text }, { type: 'image_url', image_url: { url: img } }] : text }];
// [path, body, stream, the key a good answer has]
const mix = [
  ['/v1/caption', { image_url: A, length: 'short', settings: S }, false, 'caption'],
  ['/v1/query', { question: 'Why is the sky blue?', settings: S }, false, 'answer'],
  ['/v1/detect', { image_url: B, object: 'circle', settings: { max_objects: 4 } }, false, 'objects'],
  ['/v1/point', { image_url: A, object: 'line', settings: { max_objects: 4 } }, false, 'points'],
  ['/v1/query', { image_url: B, question: 'How many shapes?', settings: S }, false, 'answer'],
  ['/v1/caption', { image_url: A, stream: true, settings: S }, true, 'caption'],
  ['/v1/chat/completions', { messages: chatMsg('Hello there.'), max_tokens: 16, temperature: 0 }, false, 'choices'],
  ['/v1/chat/completions', { messages: chatMsg('What is this?', B), max_tokens: 16, temperature: 0, stream: true }, true, null],
].map(([p, b, s, k]) => [p, JSON.stringify(b), s, k]);

const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

function send(i) {
  const [p, body, stream, key] = mix[i % mix.length];
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = http.request({ host: url.hostname, port: url.port, path: p, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const text = Buffer.concat(parts).toString();
        let ok = res.statusCode === 200;
        try {
          if (!stream) ok = ok && key in JSON.parse(text);
          else if (key) ok = ok && JSON.parse(text.trim().split('\n').pop().slice(6)).completed === true;
          else ok = ok && text.trimEnd().endsWith('data: [DONE]') && !text.includes('"error"');
        } catch { ok = false; }
        resolve({ ok, ms, status: res.statusCode, text: ok ? '' : text.slice(0, 200) });
      });
      res.on('error', (e) => resolve({ ok: false, ms: 0, status: 0, text: String(e) }));
    });
    req.on('error', (e) => resolve({ ok: false, ms: 0, status: 0, text: String(e) }));
    req.end(body);
  });
}

function rssKb() {
  if (!pid) return null;
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : null;
}

const lat = [], errors = [];
let next = 0, done = 0, rssHalf = null;
const t0 = Date.now();
async function worker() {
  while (next < total) {
    const r = await send(next++);
    lat.push(r.ms);
    if (!r.ok) errors.push(`${r.status} ${r.text}`);
    if (++done === Math.floor(total / 2)) rssHalf = rssKb();
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
const seconds = (Date.now() - t0) / 1000;
const rssEnd = rssKb();
agent.destroy();

lat.sort((a, b) => a - b);
const pct = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
const summary = {
  requests: total, concurrency, errors: errors.length, seconds: +seconds.toFixed(2),
  req_per_s: +(total / seconds).toFixed(1), p50_ms: +pct(50).toFixed(1), p99_ms: +pct(99).toFixed(1),
  max_ms: +lat[lat.length - 1].toFixed(1), rss_half_kb: rssHalf, rss_end_kb: rssEnd,
};
if (args.json) console.log(JSON.stringify(summary));
else console.log(`${total} requests over ${concurrency} connections in ${summary.seconds} s: ${summary.req_per_s} req/s, ` +
  `P50 ${summary.p50_ms} ms, P99 ${summary.p99_ms} ms, ${errors.length} errors` +
  (pid ? `; server RSS ${rssHalf} kB after ${Math.floor(total / 2)}, ${rssEnd} kB after ${total}` : ''));
for (const e of errors.slice(0, 10)) console.error('error:', e);
process.exitCode = errors.length ? 1 : 0;
