// Waits until GET URL/health answers 200 (503 while the model loads); exits 1 after SECONDS.
const [url, seconds = '120'] = process.argv.slice(2);
const end = Date.now() + Number(seconds) * 1000;
for (;;) {
  try {
    const r = await fetch(url + '/health');
    if (r.status === 200) process.exit(0);
  } catch { /* not listening yet */ }
  if (Date.now() > end) {
    console.error(`${url}/health did not answer 200 within ${seconds} s`);
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 50));
}
