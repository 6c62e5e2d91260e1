// 告警: the alert queue (GET /api/v1/alerts): pending / sent / failed, channels, recent alerts.

import {get} from './api.js';
import {h, clear, when} from './util.js';

const KINDS = {bad_rating: '差评', device_offline: '设备离线', uplink_down: '上行中断', outbox: '积压过多', outbox_backlog: '积压过多', test: '测试'};
const STATES = {pending: '待发送', sent: '已发送', failed: '发送失败', retry: '重试中'};
const CHANNELS = {wecom: '企业微信', dingtalk: '钉钉', feishu: '飞书', webhook: 'Webhook', email: '邮件'};

export function mount(view) {
  const body = h('div', {id: 'alerts-body'});
  clear(view, h('div', {class: 'alerts-page'}, h('div', {class: 'page-head'}, h('h1', {text: '告警'})), body));

  async function load() {
    try {
      const a = await get('/api/v1/alerts');
      const channels = (a.channels || []).map((c) => (typeof c === 'string' ? c : c.kind || c.name || c.type || ''));
      clear(body,
        h('section', {class: 'block'}, h('div', {class: 'tiles', id: 'alert-counts'},
          [['待发送', a.pending, a.pending ? 'warn' : 'ok'], ['已发送', a.sent, 'ok'], ['发送失败', a.failed, a.failed ? 'bad' : 'ok']].map(([label, n, st]) =>
            h('div', {class: `tile ${st}`}, h('div', {class: 'tile-label', text: label}), h('div', {class: 'tile-value', text: String(n ?? 0)})))),
          h('p', {class: 'muted', text: channels.length ? `通知渠道：${channels.map((c) => CHANNELS[c] || c).join('、')}` : '未配置通知渠道'})),
        h('section', {class: 'block'}, h('h2', {text: '最近告警'}), h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: 'alert-recent'},
          h('thead', {}, h('tr', {}, ['时间', '类型', '窗口', '设备', '状态', '尝试次数'].map((t) => h('th', {text: t})))),
          h('tbody', {}, (a.recent || []).length ? a.recent.map((r) => h('tr', {class: `st-${r.state}`},
            h('td', {text: when(r.at)}), h('td', {text: KINDS[r.kind] || r.kind}), h('td', {text: r.window || '—'}),
            h('td', {text: r.device || '—'}), h('td', {text: STATES[r.state] || r.state}), h('td', {class: 'num', text: String(r.attempts ?? 0)})))
            : h('tr', {}, h('td', {colspan: 6, class: 'muted', text: '暂无告警'})))))));
    } catch (e) {
      clear(body, h('p', {class: 'error', text: e.status === 404 ? '告警服务未启用' : `读取失败：${e.message}`}));
    }
  }
  load();
  const timer = setInterval(load, 10000);
  return () => clearInterval(timer);
}
