import { adaptText, barSegments, clusterCode, formatAge } from '../format';

describe('format', () => {
  it('formats ages', () => {
    const now = Date.parse('2026-11-30T12:00:00Z');
    expect(formatAge('2026-11-30T11:59:55Z', now)).toBe('5s');
    expect(formatAge('2026-11-30T11:58:00Z', now)).toBe('2m');
    expect(formatAge('2026-11-30T09:00:00Z', now)).toBe('3h');
    expect(formatAge('2026-11-26T12:00:00Z', now)).toBe('4d');
    expect(formatAge(null, now)).toBe('');
    expect(formatAge('garbage', now)).toBe('');
  });

  it('describes adaptivity', () => {
    expect(adaptText(null)).toBe('Manual');
    expect(adaptText({ minimum: 0, maximum: 10 })).toBe('Adaptive 0–10');
    expect(adaptText({ minimum: 2, maximum: null })).toBe('Adaptive 2–∞');
  });

  it('has no segments without pods', () => {
    expect(barSegments({})).toEqual([]);
  });

  it('writes the notebook code', () => {
    expect(clusterCode('interlink-dask-ab12cd')).toBe(
      'from distributed import Client\n' +
        'from interlink_dask import InterLinkCluster\n' +
        '\n' +
        'cluster = InterLinkCluster.from_name("interlink-dask-ab12cd")\n' +
        'client = Client(cluster)\n' +
        'cluster'
    );
  });
});
