// 告警: the alert queue (GET /api/v1/alerts): pending / sent / failed, the channels (a test
// message for the operator: POST /api/v1/alerts/test), the recent alerts.

import {api, get} from './api.js';
import {h, clear, when, toast} from './util.js';

const KINDS = {bad_rating: '差评提醒', device_offline: '评价器离线', device_recovered: '评价器恢复',
  uplink_down: '上报中断', uplink_recovered: '上报恢复', outbox_full: '待上报积压', outbox_recovered: '积压解除', test: '测试消息'};
const STATES = {pending: '待发送', sent: '已发送', failed: '发送失败', dropped: '已丢弃'};
const CHANNELS = {wecom: '企业微信', dingtalk: '钉钉', feishu: '飞书', webhook: 'Webhook', email: '邮件'};

export function mount(view, ctx) {
  const body = h('div', {id: 'alerts-body'});
  clear(view, h('div', {class: 'alerts-page'}, h('div', {class: 'page-head'}, h('h1', {text: '告警'})), body));

  async function test(name, button) {
    button.disabled = true;
    try {
      const r = await api('POST', '/api/v1/alerts/test', {channel: name});
      toast(r.sent ? `测试消息已发到 ${name}` : `${name} 未收下测试消息：${r.detail || ''}`, !r.sent);
    } catch (e) {
      toast(`测试失败：${e.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  function channelList(channels) {
    if (!channels.length) return h('p', {class: 'muted', text: '未配置通知渠道'});
    return h('ul', {class: 'channels', id: 'alert-channels'}, channels.map((c) => h('li', {dataset: {channel: c.name}},
      h('strong', {text: c.name}), h('span', {class: 'tag', text: CHANNELS[c.type] || c.type}),
      h('span', {class: 'muted', text: (c.kinds || []).map((k) => KINDS[k] || k).join('、') || '全部类型'}),
      ctx.role === 'operator' ? h('button', {type: 'button', class: 'small plain', text: '发送测试', onclick: (e) => test(c.name, e.target)}) : null)));
  }

  async function load() {
    try {
      const a = await get('/api/v1/alerts');
      const recent = a.recent || [];
      clear(body,
        h('section', {class: 'block'}, h('div', {class: 'tiles', id: 'alert-counts'},
          [['待发送', a.pending, a.pending ? 'warn' : 'ok'], ['已发送', a.sent, 'ok'], ['发送失败', a.failed, a.failed ? 'bad' : 'ok'],
           ['已丢弃', a.dropped, a.dropped ? 'bad' : 'ok']].map(([label, n, st]) =>
            h('div', {class: `tile ${st}`}, h('div', {class: 'tile-label', text: label}), h('div', {class: 'tile-value', text: String(n ?? 0)}))))),
        h('section', {class: 'block'}, h('h2', {text: '通知渠道'}), channelList(a.channels || [])),
        h('section', {class: 'block'}, h('h2', {text: '最近告警'}), h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: 'alert-recent'},
          h('thead', {}, h('tr', {}, ['时间', '类型', '内容', '窗口', '设备', '渠道', '状态', '尝试'].map((t) => h('th', {text: t})))),
          h('tbody', {}, recent.length ? recent.map((r) => h('tr', {class: `st-${r.state}`},
            h('td', {text: when(r.at)}), h('td', {text: KINDS[r.kind] || r.kind}), h('td', {text: r.title || '—'}),
            h('td', {text: r.window || '—'}), h('td', {text: r.device || '—'}), h('td', {text: r.channel || '—'}),
            h('td', {text: STATES[r.state] || r.state}), h('td', {class: 'num', text: String(r.attempts ?? 0)})))
            : h('tr', {}, h('td', {colspan: 8, class: 'muted', text: '暂无告警'})))))));
    } catch (e) {
      clear(body, h('p', {class: 'error', text: e.status === 404 ? '告警服务未启用' : `读取失败：${e.message}`}));
    }
  }
  load();
  const timer = setInterval(load, 10000);
  return () => clearInterval(timer);
}
