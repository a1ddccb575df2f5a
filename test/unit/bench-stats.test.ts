import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { max, mean, median, min, p99, percentile, round, summarize } from '../../tools/bench/stats';
import { responseLength } from '../../tools/bench/raw-http';

/* The statistics behind every figure `npm run bench` prints, on inputs whose answers are known. */

const oneTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

describe('bench statistics', () => {
  it('median: the middle value of an odd count, the mean of the two middle values of an even count', () => {
    assert.equal(median([7]), 7);
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([10, 10, 10, 1_000]), 10);
    assert.equal(median([-5, 5]), 0);
    assert.equal(median([0.1, 0.2, 0.3]), 0.2);
  });

  it("does not sort the caller's array", () => {
    const xs = [3, 1, 2];
    median(xs);
    p99(xs);
    summarize(xs);
    assert.deepEqual(xs, [3, 1, 2]);
  });

  it('sorts numerically, not as strings', () => {
    assert.equal(max([9, 10, 100]), 100);
    assert.equal(min([9, 10, 100]), 9);
    assert.equal(median([9, 100, 10]), 10);
  });

  it('max, min, mean', () => {
    assert.equal(max([2, 8, 5]), 8);
    assert.equal(max([-3, -1, -2]), -1);
    assert.equal(min([2, 8, 5]), 2);
    assert.equal(mean([1, 2, 3, 4]), 2.5);
  });

  it('p99 by nearest rank: always an observed value', () => {
    assert.equal(p99(oneTo(100)), 99);
    assert.equal(p99(oneTo(1_000)), 990);
    assert.equal(p99(oneTo(10)), 10, 'with fewer than 100 values p99 is the maximum');
    assert.equal(p99([5]), 5);
    // 99 fast requests and one slow one: p99 is still a fast one; 98 + 2 slow: p99 is slow.
    assert.equal(p99([...Array<number>(99).fill(1), 50]), 1);
    assert.equal(p99([...Array<number>(98).fill(1), 50, 60]), 50);
    assert.equal(p99([...oneTo(200)].reverse()), 198);
  });

  it('percentile: edges and the median rank', () => {
    assert.equal(percentile(oneTo(10), 100), 10);
    assert.equal(percentile(oneTo(10), 50), 5);
    assert.equal(percentile(oneTo(10), 10), 1);
    assert.equal(percentile(oneTo(10), 0.1), 1);
    assert.throws(() => percentile(oneTo(10), 0), RangeError);
    assert.throws(() => percentile(oneTo(10), 101), RangeError);
  });

  it('refuses empty input and non-finite values instead of returning NaN', () => {
    for (const f of [median, max, min, mean, p99, summarize]) {
      assert.throws(() => f([]), RangeError);
      assert.throws(() => f([1, Number.NaN]), RangeError);
      assert.throws(() => f([1, Number.POSITIVE_INFINITY]), RangeError);
    }
  });

  it('summarize agrees with the single functions', () => {
    const xs = [12.5, 3, 7, 7, 100, 0.25, 42];
    assert.deepEqual(summarize(xs), { n: 7, min: 0.25, median: 7, mean: 171.75 / 7, p99: 100, max: 100 });
    assert.deepEqual(summarize(oneTo(4)), { n: 4, min: 1, median: 2.5, mean: 2.5, p99: 4, max: 4 });
  });

  it('round', () => {
    assert.equal(round(1.25, 1), 1.3);
    assert.equal(round(4.0049, 2), 4);
    assert.equal(round(1234.5678, 3), 1234.568);
    assert.equal(round(2.5), 2.5);
  });
});

describe('bench load generator: response framing', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');

  it('Content-Length: complete only once the whole body is there', () => {
    const head = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n';
    assert.equal(responseLength(b(head)), null);
    assert.equal(responseLength(b(`${head}abcd`)), null);
    assert.equal(responseLength(b(`${head}abcde`)), head.length + 5);
    assert.equal(responseLength(b(`${head}abcdeHTTP/1.1 200`)), head.length + 5, 'the next response is not part of this one');
    assert.equal(responseLength(b('HTTP/1.1 200 OK\r\nContent-Le')), null);
  });

  it('chunked: complete after the zero chunk and the empty line', () => {
    const head = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    const body = '5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n';
    assert.equal(responseLength(b(head + body)), head.length + body.length);
    assert.equal(responseLength(b(head + body.slice(0, -2))), null);
    assert.equal(responseLength(b(`${head}5\r\nhel`)), null);
    const trailer = '0\r\nX-Trailer: 1\r\n\r\n';
    assert.equal(responseLength(b(head + trailer)), head.length + trailer.length);
  });

  it('no framing: a bodiless answer ends with its headers', () => {
    const head = 'HTTP/1.1 204 No Content\r\n\r\n';
    assert.equal(responseLength(b(head)), head.length);
  });
});
