// The official clients against `tycho serve`: Moondream's Node client
// (moondream@0.2.0) for caption, query, detect and point, streamed and not,
// and the OpenAI SDK against /v1/chat/completions. Every answer must equal
// what the CLI answers for the same input. The Node client sends no
// settings, so the server runs with --seed (env.seed) and --max-tokens (to
// keep the tiny random model's rambling short), and the CLI gets the same
// seed, the same max_tokens and the reference defaults (temperature 0.5,
// top_p 0.3).
import fs from 'node:fs';
import { vl } from 'moondream';
import OpenAI from 'openai';
import sharp from 'sharp';
import { check, cli, dataUri, env, equal, image, quick, report } from './lib.mjs';

const md = new vl({ endpoint: env.url + '/v1' });
const seed = ['--seed', env.seed, '--max-tokens', env.maxTokens];

async function collect(gen) {
  let text = '';
  for await (const chunk of gen) text += chunk;
  return text;
}

// Caption: every length, plain and streamed, image as a data URI.
const captionImages = quick ? ['c_96x64.png'] : ['c_96x64.png', 'b_378x378.png'];
for (const name of captionImages) {
  for (const length of ['short', 'normal', 'long']) {
    const want = cli('caption', [image(name), '--length', length, ...seed]).caption;
    const got = await md.caption({ image: { imageUrl: dataUri(image(name)) }, length });
    equal(got.caption, want, `caption ${name} ${length}`);
    if (quick && length !== 'short') continue;
    const streamed = await md.caption({ image: { imageUrl: dataUri(image(name)) }, length, stream: true });
    equal(await collect(streamed.caption), want, `caption ${name} ${length} streamed`);
  }
}

// A Buffer: the client re-encodes it as JPEG quality 95 with sharp; the CLI reads the same bytes.
{
  const png = fs.readFileSync(image('g_400x300_rgba.png'));
  const jpeg = await sharp(png).toFormat('jpeg', { quality: 95 }).toBuffer();
  const path = `${env.tmp}/g_400x300_q95.jpg`;
  fs.writeFileSync(path, jpeg);
  const want = cli('caption', [path, ...seed]).caption;
  equal((await md.caption({ image: png })).caption, want, 'caption of a Buffer (JPEG q95)');
  equal((await md.detect({ image: png, object: 'circle' })).objects, cli('detect', [path, '--object', 'circle']).objects,
    'detect on a Buffer');
}

// Query: with and without an image, with reasoning, streamed.
const queries = [
  { name: 'b_378x378.png', question: 'How many circles are there?' },
  { name: null, question: 'Why is the sky blue?' },
  { name: 'c_96x64.png', question: 'Describe the colors.', reasoning: true },
];
if (!quick) queries.push({ name: 'f_300x200_gray.png', question: 'What is here?', reasoning: true },
  { name: 'a_640x480.png', question: 'What is in this image?' });
for (const q of queries) {
  const args = [...(q.name ? [image(q.name)] : []), '--question', q.question, ...(q.reasoning ? ['--reasoning'] : []), ...seed];
  const want = cli('query', args);
  const req = { question: q.question, ...(q.name ? { image: { imageUrl: dataUri(image(q.name)) } } : {}) };
  if (q.reasoning) req.reasoning = true;
  const got = await md.query(req);
  const what = `query ${q.name} "${q.question}"${q.reasoning ? ' reasoning' : ''}`;
  equal(got.answer, want.answer, what);
  equal(got.reasoning, want.reasoning, what, 'reasoning');
  if (!q.reasoning) {
    const streamed = await md.query({ ...req, stream: true });
    equal(await collect(streamed.answer), want.answer, what, 'streamed');
  }
}

// Detect and point: greedy, so the seed does not matter.
const finds = [['b_378x378.png', 'square'], ['c_96x64.png', 'line']];
if (!quick) finds.push(['d_1024x768.jpg', 'circle'], ['e_500x2000.png', 'triangle']);
for (const [name, object] of finds) {
  const img = { imageUrl: dataUri(image(name)) };
  equal((await md.detect({ image: img, object })).objects, cli('detect', [image(name), '--object', object]).objects,
    `detect ${name} ${object}`);
  equal((await md.point({ image: img, object })).points, cli('point', [image(name), '--object', object]).points,
    `point ${name} ${object}`);
}

// Concurrent requests through the client (batched by the engine) give the same answers.
{
  const want = cli('detect', [image('b_378x378.png'), '--object', 'circle']).objects;
  const img = { imageUrl: dataUri(image('b_378x378.png')) };
  const all = await Promise.all(Array.from({ length: 8 }, () => md.detect({ image: img, object: 'circle' })));
  check(all.every((r) => JSON.stringify(r.objects) === JSON.stringify(want)), 'concurrent detect differs');
}

// A client with an API key sends it as X-Moondream-Auth: ignored when the server has no key.
{
  const keyed = new vl({ endpoint: env.url + '/v1', apiKey: 'anything' });
  const r = await keyed.point({ image: { imageUrl: dataUri(image('c_96x64.png')) }, object: 'line' });
  equal(r.points, cli('point', [image('c_96x64.png'), '--object', 'line']).points, 'point with an unneeded key');
}

// The OpenAI SDK: chat completions, plain and streamed, text parts + an image part.
const openai = new OpenAI({ baseURL: env.url + '/v1', apiKey: 'unused', maxRetries: 0 });
const chats = [['b_378x378.png', 'What is in this image?'], [null, 'Why is the sky blue?']];
if (!quick) chats.push(['a_640x480.png', 'How many shapes?']);
for (const [name, question] of chats) {
  const want = cli('query', [...(name ? [image(name)] : []), '--question', question, '--temperature', '0', '--max-tokens', '24']);
  const content = [{ type: 'text', text: question }];
  if (name) content.push({ type: 'image_url', image_url: { url: dataUri(image(name)) } });
  const req = { model: 'md2-tiny', messages: [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content }],
    temperature: 0, max_tokens: 24 };
  const got = await openai.chat.completions.create(req);
  equal(got.choices[0].message.content, want.answer, `chat ${name} "${question}"`);
  equal(got.choices[0].finish_reason, want.finish_reason, `chat ${name} finish_reason`);
  check(got.object === 'chat.completion' && got.usage.completion_tokens === want.metrics.output_tokens &&
    got.usage.prompt_tokens === want.metrics.input_tokens, 'chat usage', got.usage, want.metrics);
  const stream = await openai.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    role = role || c.delta.role;
    text += c.delta.content || '';
    finish = c.finish_reason || finish;
  }
  equal(text, want.answer, `chat ${name} streamed`);
  check(role === 'assistant' && finish === want.finish_reason && usage?.completion_tokens === want.metrics.output_tokens,
    'chat stream role/finish/usage', { role, finish, usage });
}
// Seeds through the chat API: the same seed, the same sampled answer as the CLI.
{
  const want = cli('query', ['--question', 'Tell me a story.', '--seed', '42', '--max-tokens', '30']);
  const got = await openai.chat.completions.create({ model: 'x', seed: 42, max_tokens: 30, temperature: 0.5, top_p: 0.3,
    messages: [{ role: 'user', content: 'Tell me a story.' }] });
  equal(got.choices[0].message.content, want.answer, 'chat with a seed');
}
// Errors reach the SDK as API errors with the server's status and message.
try {
  await openai.chat.completions.create({ model: 'x', messages: [{ role: 'assistant', content: 'hi' }] });
  check(false, 'chat without a user message should fail');
} catch (e) {
  check(e.status === 400 && /user message/.test(e.message) && e.param === 'messages', 'chat error', e.status, e.message);
}
const models = await openai.models.list();
check(models.data.length === 1 && models.data[0].id === 'md2-tiny', 'models', models.data);

report('clients');
