import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, redactRedisUrl, redisEndpoint, type Config } from '../../src/config';
import { parseRedisTarget } from '../../src/redis/target';

/** Runs `fn`, which must throw a ConfigError, and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail('expected a ConfigError, but the configuration was accepted');
}

/** Asserts the error names the variable, the value and the rule, in the one-line message format. */
function assertConfigError(err: ConfigError, variable: string, value: string, rule: string | RegExp): void {
  assert.equal(err.name, 'ConfigError');
  assert.equal(err.variable, variable);
  assert.equal(err.value, value);
  if (typeof rule === 'string') assert.equal(err.rule, rule);
  else assert.match(err.rule, rule);
  assert.equal(err.message, `invalid configuration: ${variable}=${JSON.stringify(value)}: ${err.rule}`);
  assert.ok(!err.message.includes('\n'), 'the message is one line');
}

const MS_RULE = (min: number, max: number): string => `must be a whole number of milliseconds from ${min} to ${max}`;
const PORT_RULE = 'must be a whole number from 1 to 65535';
const BOOL_RULE = 'must be one of true/false/1/0/yes/no';

describe('loadConfig defaults', () => {
  it('uses every documented default when nothing is set', () => {
    const c: Config = loadConfig({}, []);
    // The advertised URL's default depends on the host name: test/unit/advertise-url.test.ts.
    const { instanceId, advertiseUrl: _advertiseUrl, ...rest } = c;
    assert.deepEqual(rest, {
      haEnabled: false,
      redisUrl: 'redis://localhost:6379/0',
      redis: { mode: 'standalone', url: 'redis://localhost:6379/0', tls: false },
      minReplicas: 'auto',
      lockTtlMs: 10_000,
      renewIntervalMs: 3_000,
      lockKey: 'grinder:leader:lock',
      cluster: 'grinder:leader:lock',
      metricsPort: 9090,
      httpHost: '0.0.0.0',
      logLevel: 'info',
      live: { enabled: true, intervalMs: 1_000, streamKey: '{grinder:leader:lock}:live', maxConsecutiveFailures: 3, streamMaxLen: 10_000 },
    });
    assert.match(instanceId, /^grinder-.+-[0-9a-f]{8}$/);
  });

  it('treats empty and blank variables as unset', () => {
    const c = loadConfig({ GRINDER_HA_ENABLED: '', GRINDER_HA_LOCK_TTL_MS: '  ', GRINDER_METRICS_PORT: '', GRINDER_LOG_LEVEL: '' });
    assert.equal(c.haEnabled, false);
    assert.equal(c.lockTtlMs, 10_000);
    assert.equal(c.metricsPort, 9090);
    assert.equal(c.logLevel, 'info');
  });

  it('gives every process its own default instance id', () => {
    const a = loadConfig({}).instanceId;
    const b = loadConfig({}).instanceId;
    assert.notEqual(a, b);
    assert.equal(a.replace(/[0-9a-f]{8}$/, ''), b.replace(/[0-9a-f]{8}$/, ''), 'same host part');
  });

  it('takes every variable when set', () => {
    const c = loadConfig({
      GRINDER_HA_ENABLED: 'true',
      GRINDER_REDIS_URL: 'redis://redis:6380/3',
      GRINDER_HA_LOCK_TTL_MS: '5000',
      GRINDER_HA_RENEW_INTERVAL_MS: '1500',
      GRINDER_HA_LOCK_KEY: 'my:lock',
      GRINDER_INSTANCE_ID: 'replica-a',
      GRINDER_METRICS_PORT: '9191',
      GRINDER_HTTP_HOST: '127.0.0.1',
      GRINDER_LOG_LEVEL: 'DEBUG',
    });
    assert.equal(c.haEnabled, true);
    assert.equal(c.redisUrl, 'redis://redis:6380/3');
    assert.equal(c.lockTtlMs, 5000);
    assert.equal(c.renewIntervalMs, 1500);
    assert.equal(c.lockKey, 'my:lock');
    assert.equal(c.instanceId, 'replica-a');
    assert.equal(c.metricsPort, 9191);
    assert.equal(c.httpHost, '127.0.0.1');
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.live.streamKey, '{my:lock}:live');
    assert.equal(c.cluster, 'my:lock', 'the cluster defaults to the lock key');
  });
});

describe('GRINDER_CLUSTER', () => {
  it('is taken as set', () => {
    assert.equal(loadConfig({ GRINDER_CLUSTER: 'prod-eu/a', GRINDER_HA_LOCK_KEY: 'x' }).cluster, 'prod-eu/a');
  });

  it('defaults to the lock key, with characters a cluster name may not have replaced by _', () => {
    assert.equal(loadConfig({ GRINDER_HA_LOCK_KEY: 'app{1}:lock' }).cluster, 'app_1_:lock');
    assert.equal(loadConfig({ GRINDER_HA_LOCK_KEY: 'k'.repeat(300) }).cluster, 'k'.repeat(128));
  });

  for (const bad of ['two words', 'quote"d', 'x'.repeat(129)]) {
    it(`rejects ${JSON.stringify(bad.slice(0, 20))}`, () => {
      assertConfigError(
        configError(() => loadConfig({ GRINDER_CLUSTER: bad })),
        'GRINDER_CLUSTER',
        bad,
        'must be 1 to 128 characters of letters, digits and _ . : @ / -',
      );
    });
  }
});

describe('GRINDER_HA_ENABLED', () => {
  const cases: [string, boolean][] = [
    ['true', true],
    ['TRUE', true],
    ['True', true],
    ['1', true],
    ['yes', true],
    ['YES', true],
    [' yes ', true],
    ['false', false],
    ['FALSE', false],
    ['0', false],
    ['no', false],
    ['No', false],
  ];
  for (const [raw, expected] of cases) {
    it(`reads ${JSON.stringify(raw)} as ${expected}`, () => {
      assert.equal(loadConfig({ GRINDER_HA_ENABLED: raw }).haEnabled, expected);
    });
  }

  for (const raw of ['maybe', 'on', 'off', '2', 'y', 'truee']) {
    it(`rejects ${JSON.stringify(raw)}`, () => {
      assertConfigError(
        configError(() => loadConfig({ GRINDER_HA_ENABLED: raw })),
        'GRINDER_HA_ENABLED',
        raw,
        BOOL_RULE,
      );
    });
  }

  it('says exactly what is wrong with "maybe"', () => {
    const err = configError(() => loadConfig({ GRINDER_HA_ENABLED: 'maybe' }));
    assert.equal(err.message, 'invalid configuration: GRINDER_HA_ENABLED="maybe": must be one of true/false/1/0/yes/no');
  });
});

describe('lease TTL and renew interval', () => {
  it('rejects a TTL below 1000 ms', () => {
    assertConfigError(
      configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: '500' })),
      'GRINDER_HA_LOCK_TTL_MS',
      '500',
      MS_RULE(1000, 3_600_000),
    );
    assertConfigError(
      configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: '999', GRINDER_HA_RENEW_INTERVAL_MS: '100' })),
      'GRINDER_HA_LOCK_TTL_MS',
      '999',
      MS_RULE(1000, 3_600_000),
    );
  });

  it('accepts a TTL of exactly 1000 ms with a short enough renew interval', () => {
    const c = loadConfig({ GRINDER_HA_LOCK_TTL_MS: '1000', GRINDER_HA_RENEW_INTERVAL_MS: '300' });
    assert.equal(c.lockTtlMs, 1000);
    assert.equal(c.renewIntervalMs, 300);
  });

  for (const raw of ['10s', '-1', '1.5e4', '10000.5', 'abc', '0x2710']) {
    it(`rejects the TTL ${JSON.stringify(raw)}`, () => {
      assertConfigError(
        configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: raw })),
        'GRINDER_HA_LOCK_TTL_MS',
        raw,
        MS_RULE(1000, 3_600_000),
      );
    });
  }

  it('rejects a renew interval equal to or above the TTL', () => {
    const above = configError(() => loadConfig({ GRINDER_HA_RENEW_INTERVAL_MS: '10000' }));
    assertConfigError(above, 'GRINDER_HA_RENEW_INTERVAL_MS', '10000', /^must be less than GRINDER_HA_LOCK_TTL_MS \(10000\)/);

    const equal = configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: '5000', GRINDER_HA_RENEW_INTERVAL_MS: '5000' }));
    assertConfigError(equal, 'GRINDER_HA_RENEW_INTERVAL_MS', '5000', /^must be less than GRINDER_HA_LOCK_TTL_MS \(5000\)/);

    const farAbove = configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: '2000', GRINDER_HA_RENEW_INTERVAL_MS: '60000' }));
    assertConfigError(farAbove, 'GRINDER_HA_RENEW_INTERVAL_MS', '60000', /^must be less than GRINDER_HA_LOCK_TTL_MS \(2000\)/);
  });

  it('names the renew interval (with its default value) when only the TTL is lowered under it', () => {
    const err = configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: '2000' }));
    assertConfigError(err, 'GRINDER_HA_RENEW_INTERVAL_MS', '3000', /^must be less than GRINDER_HA_LOCK_TTL_MS \(2000\)/);
  });

  it('shows the default in effect, not a blank, when the renew interval is set but empty', () => {
    const err = configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: '2000', GRINDER_HA_RENEW_INTERVAL_MS: '' }));
    assertConfigError(err, 'GRINDER_HA_RENEW_INTERVAL_MS', '3000', /^must be less than GRINDER_HA_LOCK_TTL_MS \(2000\)/);
    const tight = configError(() => loadConfig({ GRINDER_HA_LOCK_TTL_MS: '3500', GRINDER_HA_RENEW_INTERVAL_MS: ' ' }));
    assertConfigError(tight, 'GRINDER_HA_RENEW_INTERVAL_MS', '3000', /use at most 2740 ms, or raise GRINDER_HA_LOCK_TTL_MS$/);
  });

  it('rejects a renew interval that leaves no time for a renewal to finish before the deadline', () => {
    // TTL 10000: safety margin 125 ms, Redis timeout 2000 ms, so renew + 2000 must be <= 9875.
    assert.equal(loadConfig({ GRINDER_HA_RENEW_INTERVAL_MS: '7875' }).renewIntervalMs, 7875);
    const err = configError(() => loadConfig({ GRINDER_HA_RENEW_INTERVAL_MS: '7876' }));
    assertConfigError(err, 'GRINDER_HA_RENEW_INTERVAL_MS', '7876', /use at most 7875 ms, or raise GRINDER_HA_LOCK_TTL_MS$/);
  });

  it('rejects a renew interval below 10 ms or not a number', () => {
    assertConfigError(
      configError(() => loadConfig({ GRINDER_HA_RENEW_INTERVAL_MS: '9' })),
      'GRINDER_HA_RENEW_INTERVAL_MS',
      '9',
      MS_RULE(10, 3_600_000),
    );
    assertConfigError(
      configError(() => loadConfig({ GRINDER_HA_RENEW_INTERVAL_MS: '3s' })),
      'GRINDER_HA_RENEW_INTERVAL_MS',
      '3s',
      MS_RULE(10, 3_600_000),
    );
  });
});

describe('metrics port', () => {
  for (const raw of ['0', '65536', 'abc', '-1', '80.5']) {
    it(`rejects GRINDER_METRICS_PORT=${JSON.stringify(raw)}`, () => {
      assertConfigError(
        configError(() => loadConfig({ GRINDER_METRICS_PORT: raw })),
        'GRINDER_METRICS_PORT',
        raw,
        PORT_RULE,
      );
    });
  }

  it('accepts the ends of the range', () => {
    assert.equal(loadConfig({ GRINDER_METRICS_PORT: '1' }).metricsPort, 1);
    assert.equal(loadConfig({ GRINDER_METRICS_PORT: '65535' }).metricsPort, 65535);
  });

  it('lets --metrics-port N override GRINDER_METRICS_PORT', () => {
    assert.equal(loadConfig({ GRINDER_METRICS_PORT: '9095' }, ['--metrics-port', '9091']).metricsPort, 9091);
    assert.equal(loadConfig({}, ['--metrics-port', '9091']).metricsPort, 9091);
  });

  it('lets --metrics-port=N override GRINDER_METRICS_PORT', () => {
    assert.equal(loadConfig({ GRINDER_METRICS_PORT: '9095' }, ['--metrics-port=9091']).metricsPort, 9091);
  });

  it('validates the --metrics-port value', () => {
    assertConfigError(
      configError(() => loadConfig({}, ['--metrics-port', '70000'])),
      '--metrics-port',
      '70000',
      PORT_RULE,
    );
    assertConfigError(
      configError(() => loadConfig({}, ['--metrics-port=0'])),
      '--metrics-port',
      '0',
      PORT_RULE,
    );
    assertConfigError(
      configError(() => loadConfig({}, ['--metrics-port=abc'])),
      '--metrics-port',
      'abc',
      PORT_RULE,
    );
    assertConfigError(
      configError(() => loadConfig({}, ['--metrics-port'])),
      '--metrics-port',
      '',
      'needs a port number, e.g. --metrics-port 9091',
    );
  });

  it('rejects any other command-line argument', () => {
    const err = configError(() => loadConfig({}, ['--port', '9091']));
    assertConfigError(err, 'argument', '--port', /^unknown argument; the only option is --metrics-port N/);
  });

  it('does not echo the value of an unknown argument (it may be a URL with a password)', () => {
    const err = configError(() => loadConfig({}, ['--redis-url=redis://:hunter2@redis:6379/0']));
    assertConfigError(err, 'argument', '--redis-url=…', /^unknown argument/);
    assert.ok(!err.message.includes('hunter2'));
    const bare = configError(() => loadConfig({}, ['redis://:hunter2@redis:6379/0']));
    assertConfigError(bare, 'argument', '<value>', /^unknown argument/);
    assert.ok(!bare.message.includes('hunter2'));
  });
});

describe('GRINDER_REDIS_URL', () => {
  it('rejects an unparsable URL without echoing it', () => {
    const err = configError(() => loadConfig({ GRINDER_REDIS_URL: 'not a url' }));
    assertConfigError(
      err,
      'GRINDER_REDIS_URL',
      '<unparsable>',
      'must be a URL such as redis://[:password@]host:6379/0, rediss://…, redis+sentinel://host:26379/mymaster or redis+cluster://host:6379',
    );
  });

  it('rejects a scheme other than redis://, rediss://, redis+sentinel:// and redis+cluster://', () => {
    for (const url of ['http://localhost:6379/0', 'tcp://localhost:6379', 'unix:///tmp/redis.sock']) {
      const err = configError(() => loadConfig({ GRINDER_REDIS_URL: url }));
      assertConfigError(err, 'GRINDER_REDIS_URL', url, 'the scheme must be redis://, rediss:// (TLS), redis+sentinel:// or redis+cluster://');
    }
  });

  it('rejects a URL without a host', () => {
    const err = configError(() => loadConfig({ GRINDER_REDIS_URL: 'redis:localhost' }));
    assertConfigError(err, 'GRINDER_REDIS_URL', 'redis:localhost', 'the URL must name a host, e.g. redis://redis:6379/0');
  });

  it('rejects a path that is not a database number', () => {
    const err = configError(() => loadConfig({ GRINDER_REDIS_URL: 'redis://localhost:6379/cache' }));
    assertConfigError(err, 'GRINDER_REDIS_URL', 'redis://localhost:6379/cache', 'the path must be a database number, e.g. /0');
  });

  it('accepts rediss://, passwords, users, no path and no port, and keeps the URL as given', () => {
    for (const url of [
      'rediss://:s3cret@redis.example.com:6380/2',
      'redis://default:s3cret@redis:6379/0',
      'redis://:p%40ss@redis:6379/1',
      'redis://redis',
      'redis://redis:6379',
      'redis://[::1]:6379/0',
    ]) {
      assert.equal(loadConfig({ GRINDER_REDIS_URL: url }).redisUrl, url);
    }
  });

  it('rejects user info without a colon (a password missing its colon), never showing it', () => {
    for (const url of ['redis://SECRET@host:6379/0', 'rediss://SECRET@host/0']) {
      const err = configError(() => loadConfig({ GRINDER_REDIS_URL: url }));
      assert.equal(err.variable, 'GRINDER_REDIS_URL');
      assert.match(err.rule, /no colon.*redis:\/\/:PASSWORD@host/);
      assert.ok(!err.message.includes('SECRET'), err.message);
    }
    // An ACL user whose password is empty on purpose still has a way to say so.
    assert.equal(loadConfig({ GRINDER_REDIS_URL: 'redis://alice:@host/0' }).redisUrl, 'redis://alice:@host/0');
  });

  it('rejects a database beyond 15 (Redis has 16 by default), in the path or the query', () => {
    for (const url of ['redis://host/99', 'redis://host/16', 'redis://host?db=16']) {
      const err = configError(() => loadConfig({ GRINDER_REDIS_URL: url }));
      assert.equal(err.variable, 'GRINDER_REDIS_URL');
      assert.match(err.rule, /out of range: use 0 to 15 \(a Redis has 16 databases/);
      assert.match(err.rule, /GRINDER_HA_LOCK_KEY/);
    }
    assert.equal(loadConfig({ GRINDER_REDIS_URL: 'redis://host/15' }).redisUrl, 'redis://host/15');
  });

  it('knows where a URL points, without its credentials', () => {
    assert.deepEqual(redisEndpoint(parseRedisTarget('rediss://:pw@redis.example.com:6380/2')), { host: 'redis.example.com', port: 6380, db: 2, tls: true });
    assert.deepEqual(redisEndpoint(parseRedisTarget('redis://redis')), { host: 'redis', port: 6379, db: 0, tls: false });
    assert.deepEqual(redisEndpoint(parseRedisTarget('redis://[::1]:7000?db=3')), { host: '::1', port: 7000, db: 3, tls: false });
  });

  it('never puts the password of the URL in a ConfigError', () => {
    const bad: string[] = [
      'redis://:s3cret@host:6379/x',
      'redis://default:s3cret@host:6379/x',
      'rediss://:s3cret@host:6379/0/1',
      'http://:s3cret@host:6379/0',
      'redis://:s3cret@:6379/0',
      'redis://:s3cret@/0',
      'redis://:s3cret@host:99999/0',
      'redis://:s3cret@ho st/0',
      'redis://host:6379/x?password=s3cret',
      'redis:/:s3cret@host/0',
      'redis::s3cret@host/0',
    ];
    for (const url of bad) {
      const err = configError(() => loadConfig({ GRINDER_REDIS_URL: url }));
      assert.equal(err.variable, 'GRINDER_REDIS_URL');
      assert.ok(!err.message.includes('s3cret'), `password printed for ${url}: ${err.message}`);
      assert.ok(!err.value.includes('s3cret'), `password kept in .value for ${url}`);
      assert.ok(!String(err.stack).includes('s3cret'), `password in the stack for ${url}`);
    }
    // And the message still shows which URL was meant, with the password masked.
    const err = configError(() => loadConfig({ GRINDER_REDIS_URL: 'redis://:s3cret@host:6379/x' }));
    assert.equal(err.value, 'redis://:***@host:6379/x');
  });

  it('does not print the URL password when another variable is wrong', () => {
    const err = configError(() => loadConfig({ GRINDER_REDIS_URL: 'redis://:s3cret@host:6379/0', GRINDER_HA_LOCK_TTL_MS: '500' }));
    assert.equal(err.variable, 'GRINDER_HA_LOCK_TTL_MS');
    assert.ok(!err.message.includes('s3cret'));
  });
});

describe('Sentinel and Cluster URLs', () => {
  it("reads a Sentinel URL: several Sentinels, the master name, a database, and the data nodes' credentials", () => {
    const c = loadConfig({ GRINDER_REDIS_URL: 'redis+sentinel://app:s3cret@s1:26379,s2,[::1]:26380/mymaster/2' });
    assert.deepEqual(c.redis, {
      mode: 'sentinel',
      sentinels: [
        { host: 's1', port: 26_379 },
        { host: 's2', port: 26_379 },
        { host: '::1', port: 26_380 },
      ],
      masterName: 'mymaster',
      db: 2,
      tls: false,
      username: 'app',
      password: 's3cret',
    });
  });

  it("takes the Sentinels' own password from GRINDER_REDIS_SENTINEL_PASSWORD, never from the URL", () => {
    const c = loadConfig({
      GRINDER_REDIS_URL: 'rediss+sentinel://s1:26379/mymaster',
      GRINDER_REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
      GRINDER_REDIS_SENTINEL_USERNAME: 'watcher',
    });
    assert.equal(c.redis.mode, 'sentinel');
    if (c.redis.mode !== 'sentinel') return;
    assert.equal(c.redis.sentinelPassword, 'sentinel-secret');
    assert.equal(c.redis.sentinelUsername, 'watcher');
    assert.equal(c.redis.tls, true);
    assert.throws(
      () => loadConfig({ GRINDER_REDIS_URL: 'redis+sentinel://s1/mymaster?sentinelPassword=x' }),
      /no query parameters; give the Sentinels' password in GRINDER_REDIS_SENTINEL_PASSWORD/,
    );
  });

  it('reads a Cluster URL with several seed nodes', () => {
    const c = loadConfig({ GRINDER_REDIS_URL: 'redis+cluster://:pw@n1:7000,n2:7001' });
    assert.deepEqual(c.redis, {
      mode: 'cluster',
      nodes: [
        { host: 'n1', port: 7_000 },
        { host: 'n2', port: 7_001 },
      ],
      tls: false,
      password: 'pw',
    });
  });

  for (const [url, rule] of [
    ['redis+sentinel://s1:26379', /ends in \/<master name>/],
    ['redis+sentinel://s1:26379/m/99', /database after the master name must be a number from 0 to 15/],
    ['redis+cluster://n1:7000/3', /Cluster URL has no path/],
    ['redis+cluster://n1:99999', /port 99999 is not from 1 to 65535/],
    ['redis+sentinal://s1/m', /scheme must be redis:\/\/, rediss:\/\/ \(TLS\), redis\+sentinel:\/\/ or redis\+cluster:\/\//],
  ] as const) {
    it(`refuses ${url} and says the rule`, () => {
      assert.throws(
        () => loadConfig({ GRINDER_REDIS_URL: url }),
        (err: unknown) => err instanceof ConfigError && err.variable === 'GRINDER_REDIS_URL' && rule.test(err.message),
      );
    });
  }

  it('never shows the password of a Sentinel or Cluster URL', () => {
    assert.equal(redactRedisUrl('redis+sentinel://app:s3cret@s1:26379/m'), 'redis+sentinel://app:***@s1:26379/m');
    assert.equal(redactRedisUrl('redis+cluster://lonely-secret@n1:7000'), 'redis+cluster://***@n1:7000');
    assert.throws(
      () => loadConfig({ GRINDER_REDIS_URL: 'redis+cluster://lonely-secret@n1:7000' }),
      (err: unknown) => err instanceof Error && !err.message.includes('lonely-secret') && /user info has no colon/.test(err.message),
    );
    assert.throws(
      () => loadConfig({ GRINDER_REDIS_URL: 'redis+cluster://u:topsecret@n1:7000/9' }),
      (err: unknown) => err instanceof Error && !err.message.includes('topsecret') && err.message.includes('u:***@'),
    );
  });

  it('GRINDER_REDIS_MIN_REPLICAS is auto by default, or a number from 0 to 16', () => {
    assert.equal(loadConfig({}).minReplicas, 'auto');
    assert.equal(loadConfig({ GRINDER_REDIS_MIN_REPLICAS: ' 2 ' }).minReplicas, 2);
    assert.equal(loadConfig({ GRINDER_REDIS_MIN_REPLICAS: 'AUTO' }).minReplicas, 'auto');
    assert.throws(
      () => loadConfig({ GRINDER_REDIS_MIN_REPLICAS: 'two' }),
      /must be auto \(one replica once the master was seen with one; none with one Redis\) or a whole number from 0 to 16/,
    );
    assert.throws(() => loadConfig({ GRINDER_REDIS_MIN_REPLICAS: '17' }), /from 0 to 16/);
  });

  it("on a Cluster, the live stream must share the lock key's slot", () => {
    assert.throws(() => loadConfig({ GRINDER_REDIS_URL: 'redis+cluster://n1:7000', GRINDER_LIVE_STREAM_KEY: 'elsewhere' }), /must hash to the lock key's slot/);
    assert.equal(loadConfig({ GRINDER_REDIS_URL: 'redis+cluster://n1:7000' }).live.streamKey, '{grinder:leader:lock}:live');
    assert.equal(loadConfig({ GRINDER_LIVE_STREAM_KEY: 'elsewhere' }).live.streamKey, 'elsewhere', 'one Redis takes any key');
  });
});

describe('redactRedisUrl', () => {
  const cases: [string, string][] = [
    ['redis://:s3cret@host:6379/0', 'redis://:***@host:6379/0'],
    ['redis://default:s3cret@host:6379/0', 'redis://default:***@host:6379/0'],
    ['rediss://:s3cret@host:6380/2', 'rediss://:***@host:6380/2'],
    ['redis://:p%40ss@host:6379/0', 'redis://:***@host:6379/0'],
    ['redis://host:6379/0', 'redis://host:6379/0'],
    ['redis://host:6379/0?password=s3cret&db=1', 'redis://host:6379/0?password=***&db=1'],
    ['redis://host:6379/0?sentinelPassword=s3cret', 'redis://host:6379/0?sentinelPassword=***'],
    ['redis:/:s3cret@host/0', 'redis:/:***@host/0'],
    ['redis://SECRET@host:6379/0', 'redis://***@host:6379/0'],
    ['redis:/SECRET@host/0', 'redis:/***@host/0'],
    ['not a url :s3cret@', '<unparsable Redis URL>'],
  ];
  for (const [url, shown] of cases) {
    it(`shows ${url} as ${shown}`, () => {
      assert.equal(redactRedisUrl(url), shown);
    });
  }
});

describe('other variables', () => {
  it('rejects a lock key with white space', () => {
    assertConfigError(
      configError(() => loadConfig({ GRINDER_HA_LOCK_KEY: 'my lock' })),
      'GRINDER_HA_LOCK_KEY',
      'my lock',
      'must not contain white space',
    );
  });

  it('rejects an instance id with characters outside the allowed set', () => {
    assertConfigError(
      configError(() => loadConfig({ GRINDER_INSTANCE_ID: 'a/b' })),
      'GRINDER_INSTANCE_ID',
      'a/b',
      'must be 1 to 128 characters of letters, digits and _ . : @ -',
    );
    assertConfigError(
      configError(() => loadConfig({ GRINDER_INSTANCE_ID: 'x'.repeat(129) })),
      'GRINDER_INSTANCE_ID',
      'x'.repeat(129),
      'must be 1 to 128 characters of letters, digits and _ . : @ -',
    );
  });

  it('rejects a GRINDER_HTTP_HOST that is neither an IP address nor a host name', () => {
    for (const host of ['bad host', 'http://0.0.0.0', '0.0.0.0:9090', 'host_name', '-lead.example']) {
      const err = configError(() => loadConfig({ GRINDER_HTTP_HOST: host }));
      assert.equal(err.variable, 'GRINDER_HTTP_HOST');
      assert.match(err.rule, /must be an IP address of this machine/);
    }
    for (const host of ['0.0.0.0', '::', '127.0.0.1', '::1', 'localhost', 'grinder-1.internal']) {
      assert.equal(loadConfig({ GRINDER_HTTP_HOST: host }).httpHost, host);
    }
  });

  it('rejects an unknown log level', () => {
    assertConfigError(
      configError(() => loadConfig({ GRINDER_LOG_LEVEL: 'verbose' })),
      'GRINDER_LOG_LEVEL',
      'verbose',
      'must be one of trace, debug, info, warn, error, fatal, silent',
    );
  });
});
