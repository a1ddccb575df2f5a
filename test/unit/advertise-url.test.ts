import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { ConfigError, loadConfig } from '../../src/config';
import { SETTINGS } from '../../src/usage';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}, but the configuration was accepted`);
}

describe('GRINDER_ADVERTISE_URL', () => {
  it("defaults to http://<this host's name>:<metrics port>, following --metrics-port", () => {
    assert.equal(loadConfig({}).advertiseUrl, new URL(`http://${hostname()}:9090`).origin);
    assert.equal(loadConfig({ GRINDER_METRICS_PORT: '9191' }).advertiseUrl, new URL(`http://${hostname()}:9191`).origin);
    assert.equal(loadConfig({ GRINDER_METRICS_PORT: '9191' }, ['--metrics-port', '9292']).advertiseUrl, new URL(`http://${hostname()}:9292`).origin);
    assert.equal(loadConfig({ GRINDER_ADVERTISE_URL: '  ' }).advertiseUrl, new URL(`http://${hostname()}:9090`).origin, 'blank counts as unset');
  });

  for (const [raw, expected] of [
    ['http://grinder_live_1:9090', 'http://grinder_live_1:9090'],
    ['http://grinder_live_1:9090/', 'http://grinder_live_1:9090'],
    ['https://Grinder-1.Example.COM', 'https://grinder-1.example.com'],
    ['https://grinder-1.example.com:443', 'https://grinder-1.example.com'],
    ['http://10.0.0.7:9091', 'http://10.0.0.7:9091'],
    ['http://[::1]:9090', 'http://[::1]:9090'],
    [' http://grinder-2:9090 ', 'http://grinder-2:9090'],
  ] as const) {
    it(`takes ${JSON.stringify(raw)} as ${expected}`, () => {
      assert.equal(loadConfig({ GRINDER_ADVERTISE_URL: raw }).advertiseUrl, expected);
    });
  }

  for (const [raw, rule] of [
    ['grinder-1:9090', /^the scheme must be http:\/\/ or https:\/\//],
    ['not a url', /^must be an http:\/\/ or https:\/\/ URL at which other tools reach this replica's HTTP endpoint, e\.g\. http:\/\/grinder-1:9090$/],
    ['ftp://grinder-1', /^the scheme must be http:\/\/ or https:\/\//],
    ['redis://grinder-1:6379', /^the scheme must be http:\/\/ or https:\/\//],
    ['http://grinder-1:9090/status', /^must be scheme, host and port only, without a path, query or fragment/],
    ['http://grinder-1:9090/?x=1', /^must be scheme, host and port only/],
    ['http://grinder-1:9090#top', /^must be scheme, host and port only/],
    ['http://grinder-1:9090?', /^must be scheme, host and port only/],
  ] as const) {
    it(`refuses ${JSON.stringify(raw)}, naming the variable, the value and the rule`, () => {
      const err = configError({ GRINDER_ADVERTISE_URL: raw });
      assert.equal(err.variable, 'GRINDER_ADVERTISE_URL');
      assert.equal(err.value, raw);
      assert.match(err.rule, rule);
      assert.match(err.rule, /e\.g\. http:\/\/grinder-1:9090$/, 'says what a good value looks like');
      assert.equal(err.message, `invalid configuration: GRINDER_ADVERTISE_URL=${JSON.stringify(raw)}: ${err.rule}`);
    });
  }

  it('refuses user info without showing the password: everyone who reads the cluster view would see it', () => {
    const err = configError({ GRINDER_ADVERTISE_URL: 'http://admin:s3cret@grinder-1:9090' });
    assert.equal(err.variable, 'GRINDER_ADVERTISE_URL');
    assert.match(err.rule, /^must not contain user info: everyone who reads the cluster view \(grinder list, \/cluster\) sees this URL/);
    assert.ok(!err.message.includes('s3cret'), err.message);
    assert.ok(!err.message.includes('admin'), err.message);
    assert.equal(err.value, 'http://***@grinder-1:9090/');
  });

  for (const raw of ['ftp://admin:s3cret@grinder-1:9090', 'http://admin:s3cret@grinder-1:99999', 'http://admin:s3cret@grinder-1:9090/status']) {
    it(`never shows the password of a URL it refuses for another reason: ${raw.replace('s3cret', '…')}`, () => {
      const err = configError({ GRINDER_ADVERTISE_URL: raw });
      assert.ok(!err.message.includes('s3cret'), err.message);
      assert.ok(!err.message.includes('admin'), err.message);
    });
  }

  it('is listed by --help', () => {
    const s = SETTINGS.find((x) => x.name === 'GRINDER_ADVERTISE_URL');
    assert.ok(s, 'GRINDER_ADVERTISE_URL is in SETTINGS');
    assert.equal(s.default, 'http://<hostname>:<metrics port>');
  });
});
