// A server started with --api-key secret --max-batch-size 1 --max-queue 2
// --max-tokens 4 --max-pixels-in-flight 200000: the key on /v1/* (both
// headers, and the official client's apiKey), 429 with Retry-After when the
// queue is full or the images in flight are over the pixel budget.
import { vl } from 'moondream';
import OpenAI from 'openai';
import { check, dataUri, env, equal, image, metric, report, request } from './lib.mjs';

const key = 'secret';
const tiny = { question: 'q', settings: { temperature: 0, max_tokens: 2 } };

// ---- the API key ----------------------------------------------------------------------------
for (const [what, headers, status] of [
  ['no key', {}, 401],
  ['wrong key', { 'X-Moondream-Auth': 'nope' }, 401],
  ['empty key', { 'X-Moondream-Auth': '' }, 401],
  ['wrong bearer', { Authorization: 'Bearer nope' }, 401],
  ['key as a prefix', { 'X-Moondream-Auth': key + 'x' }, 401],
  ['X-Moondream-Auth', { 'X-Moondream-Auth': key }, 200],
  ['Authorization: Bearer', { Authorization: 'Bearer ' + key }, 200],
]) {
  const r = await request('POST', '/v1/query', { body: tiny, headers });
  check(r.status === status, what, r.status, r.text.slice(0, 200));
  if (status === 401) check(r.json?.error?.type === 'authentication_error', what, 'body', r.text.slice(0, 200));
}
check((await request('GET', '/v1/models')).status === 401, '/v1/models needs the key');
check((await request('GET', '/health')).status === 200, '/health needs no key');
check((await request('GET', '/metrics')).status === 200, '/metrics needs no key');
{
  const md = new vl({ endpoint: env.url + '/v1', apiKey: key });
  const r = await md.query({ question: 'Why?' });  // text only: quick even under ASan (the server has --max-tokens 4)
  check(typeof r.answer === 'string' && r.answer.length > 0, 'official client with apiKey', r);
  const anon = new vl({ endpoint: env.url + '/v1' });
  let status = null;
  try { await anon.query({ question: 'Why?' }); } catch (e) { status = e.message; }
  check(/status: 401/.test(status), 'official client without a key is refused', status);
  const openai = new OpenAI({ baseURL: env.url + '/v1', apiKey: key, maxRetries: 0 });
  const c = await openai.chat.completions.create({ model: 'x', max_tokens: 3, temperature: 0,
    messages: [{ role: 'user', content: 'hi' }] });
  check(c.choices[0].message.content.length > 0, 'OpenAI SDK with the key (Bearer)', c);
}
const auth = { 'X-Moondream-Auth': key };

// ---- queue full: 429 with Retry-After; the others still right ----------------------------------
// 16 requests at once, each long enough (30 tokens) that one running and two
// waiting cannot absorb the burst.
{
  const burst = { question: 'q', settings: { temperature: 0, max_tokens: 30 } };
  const want = (await request('POST', '/v1/query', { body: burst, headers: auth })).json?.answer;
  const all = await Promise.all(Array.from({ length: 16 }, () => request('POST', '/v1/query', { body: burst, headers: auth })));
  const busy = all.filter((r) => r.status === 429);
  check(busy.length > 0, 'no 429 with a queue of 2', all.map((r) => r.status).join(','));
  check(all.every((r) => r.status === 200 || r.status === 429), 'statuses', all.map((r) => r.status).join(','));
  check(busy.every((r) => r.headers['retry-after'] === '1' && r.json?.error?.type === 'rate_limit_error'),
    '429 headers and body', busy[0]?.headers, busy[0]?.text);
  check(all.filter((r) => r.status === 200).every((r) => r.json?.answer === want), 'answers under load');
}

// ---- the pixel budget: one 378x378 image (142,884 px) at a time ---------------------------------
{
  const body = { image_url: dataUri(image('b_378x378.png')), object: 'circle', settings: { max_objects: 2 } };
  const want = (await request('POST', '/v1/detect', { body, headers: auth })).json?.objects;
  const all = await Promise.all(Array.from({ length: 6 }, () => request('POST', '/v1/detect', { body, headers: auth })));
  const over = all.filter((r) => r.status === 429 && r.json?.error?.code === 'pixels_in_flight');
  check(over.length > 0 && over.every((r) => r.headers['retry-after'] === '1'), 'pixel budget: 429',
    all.map((r) => `${r.status} ${r.json?.error?.code ?? ''}`).join(','));
  check(all.every((r) => r.status === 429 || (r.status === 200 && JSON.stringify(r.json.objects) === JSON.stringify(want))),
    'pixel budget: the others are answered right');
  // Released once the response is out (just after the client has it).
  let px = -1;
  for (let i = 0; i < 100 && px !== 0; i++) px = await metric('tycho_http_pixels_in_flight');
  check(px === 0, 'no pixels in flight afterwards', px);
}
equal((await request('POST', '/v1/query', { body: tiny, headers: auth })).status, 200, 'serving after the burst');
report('limits');
