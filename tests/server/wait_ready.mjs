// Waits until GET URL/health answers 200 (503 while the model loads); exits 1 after SECONDS.
import http from 'node:http';

const [url, seconds = '120'] = process.argv.slice(2);
const end = Date.now() + Number(seconds) * 1000;
const status = () => new Promise((resolve) => {
  http.get(url + '/health', (res) => { res.resume(); resolve(res.statusCode); }).on('error', () => resolve(0));
});
while ((await status()) !== 200) {
  if (Date.now() > end) {
    console.error(`${url}/health did not answer 200 within ${seconds} s`);
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 50));
}
