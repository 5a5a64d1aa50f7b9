// Drives Debian's Chromium through Wharf's dashboard, as a person would, for Wharf's browser
// test (crates/wharf/tests/browser.rs), which starts the server and plays the agent:
//
//   node dashboard.mjs BASE_URL ADMIN_TOKEN BUILD_ID
//
// It opens the build's page, is sent to sign in, signs in with the admin token, sees the log
// lines stored so far with their colours, prints `ready`, then waits for the line the test
// appends to arrive live, for the build to show as failed, clicks Retry (accepting the
// confirmation) and prints `retried PATH` with the new build's page. Then it opens the service's
// page, waits for the retried build to complete there (the timeline is live), deploys it with
// its button and prints `deployed PATH` with the release's page.
//
// Then it takes orders on standard input, one per line, and answers each on standard output:
//   overview          opens `/`, answers `overview`
//   expect-build ID   waits for build ID to appear on the open page without a reload: `seen ID`
//   cancel ID         cancels build ID with its button: `cancelled ID` once the page says so
//   rollback ID       rolls back to release ID with its button: `rolled back PATH`
//   shoot NAME PATH   screenshots PATH into $WHARF_SCREENSHOTS/NAME.png when that is set: `shot`
//   viewer USER PASSWORD ID  signs in as a viewer in a browser of its own, opens build ID's page
//                     and its service's, finds no button, and tries to cancel the build through
//                     the API anyway: `viewer BUTTONS STATUS`
//   done              closes the browser
// Any failure exits 1 with the reason on stderr.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const [base, token, build] = process.argv.slice(2);
const deadline = 20000;

const browser = await chromium.launch({
  executablePath: process.env.WHARF_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
  page.on('dialog', (dialog) => dialog.accept());

  await page.goto(`${base}/builds/${build}`);
  if (!new URL(page.url()).pathname.startsWith('/login')) {
    throw new Error(`not sent to sign in: ${page.url()}`);
  }
  await page.fill('input[name=token]', token);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/builds/${build}`, { timeout: deadline });

  await page.locator('#l1 .fg1').waitFor({ timeout: deadline });
  const first = await page.locator('#l1').innerText();
  if (!first.includes('<b>compiling</b>')) {
    throw new Error(`the first line reads ${JSON.stringify(first)}`);
  }
  console.log('ready');

  await page.locator('#l3').waitFor({ timeout: deadline });
  const live = await page.locator('#l3').innerText();
  if (!live.includes('arrived live')) {
    throw new Error(`the live line reads ${JSON.stringify(live)}`);
  }
  await page.locator('#summary [data-state=failed]').waitFor({ timeout: deadline });
  await page.getByRole('button', { name: 'Retry' }).click();
  await page.waitForURL((url) => url.pathname !== `/builds/${build}`, { timeout: deadline });
  const retried = new URL(page.url()).pathname;
  console.log(`retried ${retried}`);

  const service = (await page.locator('h1 a').first().innerText()).trim();
  await page.goto(`${base}/services/${service}`);
  const row = page.locator(`tr[data-build="${retried.split('/').pop()}"]`);
  await row.getByRole('button', { name: 'Deploy' }).click({ timeout: deadline });
  await page.waitForURL((url) => url.pathname.startsWith('/releases/'), { timeout: deadline });
  if (problems.length > 0) {
    throw new Error(problems.join('\n'));
  }
  console.log(`deployed ${new URL(page.url()).pathname}`);

  const orders = createInterface({ input: process.stdin });
  for await (const order of orders) {
    const [verb, argument, path] = order.trim().split(/\s+/);
    if (verb === 'done') {
      break;
    } else if (verb === 'overview') {
      await page.goto(`${base}/`);
      await page.locator('table.services').waitFor({ timeout: deadline });
      console.log('overview');
    } else if (verb === 'expect-build') {
      await page.locator(`tr[data-build="${argument}"]`).waitFor({ timeout: deadline });
      console.log(`seen ${argument}`);
    } else if (verb === 'cancel') {
      await page.goto(`${base}/builds/${argument}`);
      await page.getByRole('button', { name: 'Cancel' }).click({ timeout: deadline });
      await page.locator('#summary [data-state=cancelled]').waitFor({ timeout: deadline });
      console.log(`cancelled ${argument}`);
    } else if (verb === 'rollback') {
      await page.goto(`${base}/releases/${argument}`);
      await page.getByRole('button', { name: 'Roll back to this' }).click({ timeout: deadline });
      await page.waitForURL((url) => url.pathname.startsWith('/releases/')
        && url.pathname !== `/releases/${argument}`, { timeout: deadline });
      console.log(`rolled back ${new URL(page.url()).pathname}`);
    } else if (verb === 'viewer') {
      const [, user, password, build] = order.trim().split(/\s+/);
      const context = await browser.newContext();
      const viewer = await context.newPage();
      await viewer.goto(`${base}/builds/${build}`);
      await viewer.fill('input[name=user]', user);
      await viewer.fill('input[name=token]', password);
      await viewer.click('button[type=submit]');
      await viewer.waitForURL(`${base}/builds/${build}`, { timeout: deadline });
      let buttons = await viewer.locator('button[hx-post]').count();
      const service = (await viewer.locator('h1 a').first().innerText()).trim();
      await viewer.goto(`${base}/services/${service}`);
      buttons += await viewer.locator('button[hx-post]').count();
      const status = await viewer.evaluate(async (id) => {
        const headers = JSON.parse(document.body.getAttribute('hx-headers'));
        const answer = await fetch(`/v1/builds/${id}/cancel`, { method: 'POST', headers });
        return answer.status;
      }, build);
      await context.close();
      console.log(`viewer ${buttons} ${status}`);
    } else if (verb === 'shoot') {
      if (process.env.WHARF_SCREENSHOTS) {
        await page.goto(`${base}${path}`);
        await page.waitForLoadState('load');
        await page.screenshot({ path: `${process.env.WHARF_SCREENSHOTS}/${argument}.png`, fullPage: true });
      }
      console.log('shot');
    } else {
      throw new Error(`unknown order ${JSON.stringify(order)}`);
    }
    if (problems.length > 0) {
      throw new Error(problems.join('\n'));
    }
  }
  orders.close();
} catch (error) {
  console.error(error.stack || String(error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
