// Bad input against `tycho serve`: each request gets the right 4xx (or is
// cancelled, for a client that hangs up) with an OpenAI-style error body, and
// the server answers a good request right after each one.
import net from 'node:net';
import zlib from 'node:zlib';
import fs from 'node:fs';
import { check, dataUri, env, equal, image, metric, quick, report, request, sleep, sseEvents } from './lib.mjs';

const png = fs.readFileSync(image('c_96x64.png'));
const uri = dataUri(image('c_96x64.png'));
const S = { temperature: 0, max_tokens: 8 };

// A good request still works (after every bad one).
async function stillServing(what) {
  const r = await request('POST', '/v1/point', { body: { image_url: uri, object: 'line', settings: { max_objects: 2 } } });
  check(r.status === 200 && Array.isArray(r.json?.points), 'not serving after', what, r.status, r.text.slice(0, 200));
}

// Expects status and an error body naming param (undefined: any).
async function expectError(what, method, path, body, status, param, headers) {
  const r = await request(method, path, { body, headers });
  const e = r.json?.error;
  check(r.status === status, what, 'status', r.status, 'want', status, r.text.slice(0, 300));
  check(e && typeof e.message === 'string' && e.message && typeof e.type === 'string' && typeof e.code === 'string' &&
    'param' in e, what, 'error body', r.text.slice(0, 300));
  if (param !== undefined) check(e?.param === param, what, 'param', e?.param, 'want', param);
  check(!(r.json && ('caption' in r.json || 'answer' in r.json || 'objects' in r.json)), what, 'an error with a result');
  await stillServing(what);
  return r;
}

// A PNG of w x h 8-bit gray pixels, all zero: tiny on the wire, w * h pixels when decoded.
function zeroPng(w, h) {
  const crc32 = (buf) => {
    let c, crc = 0xffffffff;
    for (const b of buf) {
      c = (crc ^ b) & 0xff;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crc = (crc >>> 8) ^ c;
    }
    return (crc ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 0;
  const row = Buffer.alloc(w + 1), d = zlib.createDeflate({ level: 9 }), parts = [];
  d.on('data', (c) => parts.push(c));
  for (let y = 0; y < h; y++) d.write(row);
  return new Promise((resolve) => d.end(() => resolve(Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.concat(parts)),
    chunk('IEND', Buffer.alloc(0))]))));
}

// ---- bodies ---------------------------------------------------------------------------------
await expectError('malformed JSON', 'POST', '/v1/caption', '{"image_url": ', 400, null);
await expectError('trailing garbage', 'POST', '/v1/query', '{"question": "q"} x', 400, null);
await expectError('empty body', 'POST', '/v1/query', '', 400, null);
await expectError('a JSON array', 'POST', '/v1/caption', '[1, 2]', 400, null);
await expectError('question of the wrong type', 'POST', '/v1/query', { question: 5 }, 400, 'question');
await expectError('stream not a boolean', 'POST', '/v1/caption', { image_url: uri, stream: 'yes' }, 400, 'stream');
await expectError('length unknown', 'POST', '/v1/caption', { image_url: uri, length: 'huge' }, 400, 'length');
await expectError('temperature a string', 'POST', '/v1/query', { question: 'q', settings: { temperature: 'hot' } }, 400,
  'settings.temperature');
await expectError('top_p out of range', 'POST', '/v1/query', { question: 'q', settings: { top_p: 0 } }, 400, 'settings.top_p');
await expectError('max_tokens 0', 'POST', '/v1/query', { question: 'q', settings: { max_tokens: 0 } }, 400,
  'settings.max_tokens');
await expectError('settings a list', 'POST', '/v1/detect', { image_url: uri, object: 'x', settings: [] }, 400, 'settings');
await expectError('spatial ref out of [0, 1]', 'POST', '/v1/query', { image_url: uri, question: 'q', spatial_refs: [[2, 0]] },
  400, 'spatial_refs[0]');
await expectError('stream with reasoning', 'POST', '/v1/query', { question: 'q', stream: true, reasoning: true }, 400, 'stream');
await expectError('missing image_url', 'POST', '/v1/caption', { length: 'short' }, 400, 'image_url');
await expectError('missing question', 'POST', '/v1/query', { image_url: uri }, 400, 'question');
await expectError('blank object', 'POST', '/v1/detect', { image_url: uri, object: '  ' }, 400, 'object');
await expectError('missing object', 'POST', '/v1/point', { image_url: uri }, 400, 'object');
await expectError('a \\u0000 in a string', 'POST', '/v1/query', '{"question": "a\\u0000b"}', 400, null);

// ---- images ----------------------------------------------------------------------------------
await expectError('bad base64', 'POST', '/v1/caption', { image_url: 'data:image/png;base64,@@@@' }, 400, 'image_url');
await expectError('base64 with a line break', 'POST', '/v1/caption',
  { image_url: png.toString('base64').replace(/(.{76})/, '$1\n') }, 400, 'image_url');
await expectError('non-image bytes', 'POST', '/v1/caption',
  { image_url: 'data:image/png;base64,' + Buffer.from('hello, this is not an image').toString('base64') }, 400, 'image_url');
await expectError('truncated PNG', 'POST', '/v1/detect',
  { image_url: 'data:image/png;base64,' + png.subarray(0, png.length >> 1).toString('base64'), object: 'x' }, 400, 'image_url');
await expectError('an http URL', 'POST', '/v1/caption', { image_url: 'http://example.com/cat.jpg' }, 400, 'image_url');
{
  // 10000 x 10000 pixels in about 100 KB: over the server's pixel limit, refused before decoding.
  const bomb = await zeroPng(10000, 10000);
  check(bomb.length < 1 << 20, 'the bomb is small', bomb.length);
  const r = await expectError('decompression bomb', 'POST', '/v1/caption',
    { image_url: 'data:image/png;base64,' + bomb.toString('base64') }, 413, 'image_url');
  check(/pixels/.test(r.json?.error?.message), 'bomb message', r.json?.error?.message);
}
{
  // An image over --max-image-bytes (10 MiB decoded) inside a body under the body limit.
  const big = Buffer.alloc((10 << 20) + 3, 7).toString('base64');
  await expectError('image over the byte limit', 'POST', '/v1/caption', { image_url: big }, 413, 'image_url');
}

// ---- size, routes, methods --------------------------------------------------------------------
{
  const body = Buffer.alloc(30 << 20, 'a');
  await expectError('30 MB body', 'POST', '/v1/caption', body, 413, null);
  // Announced with Expect: 100-continue, it is refused before the body is sent.
  const r = await new Promise((resolve, reject) => {
    const s = net.connect(new URL(env.url).port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => { got += d; if (got.includes('\r\n\r\n')) { s.destroy(); resolve(got); } });
    s.on('error', reject);
    s.write(`POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${30 << 20}\r\n` +
      'Expect: 100-continue\r\n\r\n');
  });
  check(/^HTTP\/1\.1 413/.test(r), '30 MB with Expect: 100-continue', r.slice(0, 80));
  await stillServing('Expect: 100-continue');
}
await expectError('unknown route', 'POST', '/v1/segment', { image_url: uri, object: 'x' }, 404, null);
await expectError('unknown route (GET)', 'GET', '/', undefined, 404, null);
await expectError('GET on a POST route', 'GET', '/v1/caption', undefined, 405, null);
await expectError('DELETE on a POST route', 'DELETE', '/v1/query', undefined, 405, null);
await expectError('POST on a GET route', 'POST', '/health', {}, 405, null);
await expectError('PUT on /metrics', 'PUT', '/metrics', 'x', 405, null);
{
  const r = await request('HEAD', '/health');
  check(r.status === 200 && r.text === '', 'HEAD /health', r.status);
}

// ---- chat completions -------------------------------------------------------------------------
const chat = (body) => ({ model: 'x', messages: [{ role: 'user', content: 'hi' }], ...body });
await expectError('chat without messages', 'POST', '/v1/chat/completions', { model: 'x' }, 400, 'messages');
await expectError('chat messages not a list', 'POST', '/v1/chat/completions', { messages: {} }, 400, 'messages');
await expectError('chat unknown role', 'POST', '/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }, 400,
  'messages[0]');
await expectError('chat part type', 'POST', '/v1/chat/completions',
  { messages: [{ role: 'user', content: [{ type: 'audio', audio: {} }] }] }, 400, 'messages[0].content[0]');
await expectError('chat two images', 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: [
  { type: 'text', text: 'q' }, { type: 'image_url', image_url: { url: uri } }, { type: 'image_url', image_url: { url: uri } }] }] },
  400, 'messages[0].content');
await expectError('chat empty question', 'POST', '/v1/chat/completions',
  { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: uri } }] }] }, 400, 'messages');
await expectError('chat bad image', 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: [
  { type: 'text', text: 'q' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }] }, 400, 'messages');
await expectError('chat temperature', 'POST', '/v1/chat/completions', chat({ temperature: -1 }), 400, 'temperature');
await expectError('chat max_tokens', 'POST', '/v1/chat/completions', chat({ max_tokens: 1.5 }), 400, 'max_tokens');
await expectError('chat n', 'POST', '/v1/chat/completions', chat({ n: 2 }), 400, 'n');
await expectError('chat stream', 'POST', '/v1/chat/completions', chat({ stream: 1 }), 400, 'stream');

// ---- clients that hang up ---------------------------------------------------------------------
// Each request runs long (max_tokens 1200); the client goes away: the request is cancelled.
// A request can still end on its own before the hang-up is seen (a loaded machine, a
// sanitizer build): that try proves nothing either way, so it is made again, up to 3 times.
async function hangUpOnce(path, body, afterFirstEvent) {
  const cancelled0 = await metric('tycho_requests_finished_total{outcome="cancelled"}');
  const done0 = await metric('tycho_requests_finished_total{outcome="done"}');
  const gone0 = await metric('tycho_http_disconnects_total');
  await new Promise((resolve) => {
    const s = net.connect(new URL(env.url).port, '127.0.0.1');
    const data = JSON.stringify(body);
    s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\n\r\n${data}`);
    let got = '';
    s.on('data', (d) => { got += d; if (afterFirstEvent && got.includes('data: ')) { s.destroy(); resolve(); } });
    s.on('error', () => resolve());
    // A plain request: hang up once the engine has it (so the hang-up is seen
    // while it waits, not before it was read).
    if (!afterFirstEvent) (async () => {
      for (let i = 0; i < 400 && !((await metric('tycho_http_in_flight')) > 0); i++) await sleep(10);
      s.destroy();
      resolve();
    })();
  });
  let counts = {};
  for (let i = 0; i < 200; i++) {
    await sleep(25);
    counts = {
      cancelled: (await metric('tycho_requests_finished_total{outcome="cancelled"}')) - cancelled0,
      done: (await metric('tycho_requests_finished_total{outcome="done"}')) - done0,
      disconnects: (await metric('tycho_http_disconnects_total')) - gone0,
    };
    if ((counts.cancelled > 0 && counts.disconnects > 0) || counts.done > 0) break;
  }
  return counts;
}
async function hangUp(what, path, body, afterFirstEvent) {
  let counts;
  for (let attempt = 1; attempt <= 3; attempt++) {
    counts = await hangUpOnce(path, body, afterFirstEvent);
    if (!(counts.done > 0 && !(counts.cancelled > 0))) break;
    console.log(`${what}: try ${attempt} ended before the hang-up was seen; again`);
  }
  check(counts.cancelled > 0 && counts.disconnects > 0, what, 'was not cancelled', JSON.stringify(counts));
  await stillServing(what);
}
const long = { temperature: 0, max_tokens: 1200 };
await hangUp('disconnect mid-stream', '/v1/caption', { image_url: uri, stream: true, settings: long }, true);
await hangUp('disconnect while waiting', '/v1/query', { question: 'Tell me everything.', settings: long }, false);
await hangUp('disconnect mid-stream (chat)', '/v1/chat/completions',
  { messages: [{ role: 'user', content: 'Tell me everything.' }], stream: true, max_tokens: 1200, temperature: 0 }, true);

// ---- many bad requests at once, interleaved with good ones --------------------------------------
{
  const n = quick ? 20 : 100;
  const bad = ['{', { question: 7 }, { image_url: 'data:image/png;base64,=' }, { image_url: uri, object: '' }];
  const all = await Promise.all(Array.from({ length: n }, (_, i) => i % 2
    ? request('POST', '/v1/detect', { body: bad[i % bad.length] })
    : request('POST', '/v1/query', { body: { question: `q${i}`, settings: S } })));
  check(all.every((r, i) => (i % 2 ? r.status === 400 : r.status === 200)), 'mixed burst',
    all.map((r) => r.status).join(','));
}

// Errors after a stream started arrive as an event: an impossible prompt fails at admission.
{
  const r = await request('POST', '/v1/query', { body: { question: 'q', stream: true, settings: { max_tokens: 1 << 20 } } });
  // Refused at submit (needs more positions than the context): a plain 400, never a 200.
  check(r.status === 400 && r.json?.error, 'max_tokens past the context', r.status, r.text.slice(0, 200));
}
report('bad_input');
