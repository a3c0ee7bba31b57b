// While the model loads (the server runs with TYCHO_TEST_LOAD_DELAY_MS):
// /health answers 503 {"status": "loading"}, API requests 503 with an error
// body, /metrics works; then /health turns 200 and requests run.
import { check, metric, report, request, sleep } from './lib.mjs';

const h = await request('GET', '/health');
check(h.status === 503 && h.json?.status === 'loading', 'health while loading', h.status, h.text);
const q = await request('POST', '/v1/query', { body: { question: 'q', settings: { max_tokens: 2 } } });
check(q.status === 503 && q.json?.error?.code === 'loading' && q.json.error.type === 'service_unavailable_error',
  'a request while loading', q.status, q.text);
check((await metric('tycho_model_loaded')) === 0, 'tycho_model_loaded 0 while loading');
let up = false;
for (let i = 0; i < 600 && !up; i++) {
  up = (await request('GET', '/health')).status === 200;
  if (!up) await sleep(50);
}
check(up, 'health turns 200 once loaded');
const r = await request('POST', '/v1/query', { body: { question: 'q', settings: { max_tokens: 2 } } });
check(r.status === 200 && typeof r.json?.answer === 'string', 'a request once loaded', r.status, r.text);
check((await metric('tycho_model_loaded')) === 1, 'tycho_model_loaded 1');
report('loading');
