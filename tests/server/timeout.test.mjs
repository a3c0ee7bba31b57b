// A server started with --timeout 0.5: a request past its time gets 504, or
// in a stream a last error event (chat: then [DONE]); the server goes on.
import { check, equal, report, request, sseEvents } from './lib.mjs';

// ---- timeout --------------------------------------------------------------------------------------
const long = { question: 'Tell me everything.', settings: { temperature: 0, max_tokens: 1900 } };
{
  const r = await request('POST', '/v1/query', { body: long });
  check(r.status === 504 && r.json?.error?.type === 'timeout_error' && r.json?.error?.code === 'timeout',
    'timeout: 504', r.status, r.text.slice(0, 300));
}
{
  const r = await request('POST', '/v1/query', { body: { ...long, stream: true } });
  const events = sseEvents(r.text).map((e) => JSON.parse(e));
  const last = events[events.length - 1];
  check(r.status === 200 && r.headers['content-type'] === 'text/event-stream', 'stream headers', r.status, r.headers);
  check(last?.completed === true && last?.error?.code === 'timeout' && !('answer' in last),
    'timeout in a stream: an error event', last);
  check(events.slice(0, -1).every((e) => e.completed === false && typeof e.chunk === 'string'), 'stream events before it');
}
{
  const r = await request('POST', '/v1/chat/completions', { body: { stream: true, max_tokens: 1900,
    temperature: 0, messages: [{ role: 'user', content: 'Tell me everything.' }] } });
  const events = sseEvents(r.text);
  check(events[events.length - 1] === '[DONE]' && JSON.parse(events[events.length - 2]).error?.code === 'timeout',
    'timeout in a chat stream', events.slice(-2));
}
equal((await request('POST', '/v1/query', { body: { question: 'q', settings: { max_tokens: 2 } } })).status, 200,
  'serving after timeouts');
report('timeout');
