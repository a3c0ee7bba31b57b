// SIGTERM while a stream is running: the server stops accepting connections,
// the stream still ends normally, and the process exits 0 (the calling
// script checks the exit status).
import http from 'node:http';
import net from 'node:net';
import { check, env, quick, report, sleep } from './lib.mjs';

const port = Number(new URL(env.url).port);
const maxTokens = quick ? 300 : 1500;
const body = JSON.stringify({ question: 'Tell me everything.', stream: true, settings: { temperature: 0, max_tokens: maxTokens } });

// While the stream runs, 50 ms after the signal: a new connection must be refused.
let refused = null, endedBeforeProbe = false;
const probe = () => new Promise((resolve) => {
  const s = net.connect(port, '127.0.0.1');
  s.on('connect', () => { s.destroy(); resolve(false); });
  s.on('error', (e) => resolve(e.code === 'ECONNREFUSED'));
});
const result = await new Promise((resolve, reject) => {
  const req = http.request(env.url + '/v1/query', { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
    let text = '', signalled = false, ended = false;
    res.on('data', (d) => {
      text += d;
      if (!signalled && text.includes('data: ')) {
        signalled = true;
        process.kill(env.pid, 'SIGTERM');
        sleep(50).then(() => { endedBeforeProbe = ended; return probe(); }).then((r) => { refused = r; });
      }
    });
    res.on('end', () => { ended = true; resolve({ status: res.statusCode, text }); });
    res.on('error', reject);
  });
  req.on('error', reject);
  req.end(body);
});
while (refused === null) await sleep(10);

const events = result.text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
const last = events[events.length - 1];
check(result.status === 200 && last?.completed === true && last.finish_reason === 'length' &&
  last.metrics?.output_tokens === maxTokens, 'the stream in flight finished', last);
check(events.slice(0, -1).map((e) => e.chunk).join('') === last?.answer, 'chunks add up to the answer');
check(refused || endedBeforeProbe, 'new connections are refused while draining');
if (endedBeforeProbe) console.log('note: the stream ended before the probe; refusal not checked');
report('shutdown');
