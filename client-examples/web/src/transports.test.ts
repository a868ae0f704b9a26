// Place in the data path: function URL / WebSocket API -> **subscriber** (unit
// tests of the page's other transports, `transports.ts`: the event-stream
// reader and the switch).
import { describe, expect, it } from 'vitest';
import { connectFor, takeEvents } from './transports';

describe('takeEvents', () => {
  it('returns the data of whole events and keeps the rest', () => {
    const { data, rest } = takeEvents('id: 0\ndata: {"seq":0}\n\nid: 1\ndata: {"seq":1}\n\nid: 2\ndata: {"se');
    expect(data).toEqual(['{"seq":0}', '{"seq":1}']);
    expect(rest).toBe('id: 2\ndata: {"se');
  });

  it('reads CRLF line ends and comments as the event-stream format allows', () => {
    const { data, rest } = takeEvents(': ping\r\n\r\nid: 3\r\ndata: {"seq":3}\r\n\r\n');
    expect(data).toEqual(['{"seq":3}']);
    expect(rest).toBe('');
  });
});

describe('connectFor', () => {
  it('offers a transport only when config.json names its URL', () => {
    expect(connectFor('function-url', {})).toBeNull();
    expect(connectFor('websocket', { functionUrl: 'http://x/' })).toBeNull();
    expect(connectFor('websocket', { webSocketUrl: 'ws://x/dev' })).not.toBeNull();
    expect(connectFor('appsync', { functionUrl: 'http://x/', webSocketUrl: 'ws://x/dev' })).toBeNull();
  });
});
