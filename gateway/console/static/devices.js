// 设备: the registry (GET/POST/PATCH/DELETE /api/v1/devices) with what a technician needs to
// provision an evaluator. A new key is made here (crypto.getRandomValues), sent once and shown
// once: the gateway never gives a key back.

import {api, get} from './api.js';
import {h, clear, when, ago, toast, transportName} from './util.js';

const BOARDS = {five_button: '五键', touch: '触摸屏'};

// Ratings the evaluator keeps until the central platform holds them (custody), and how old the
// oldest is: a count rising for hours means the uplink is not getting them through.
export function custodyText(d, now = Date.now() / 1000) {
  if (!d.custody) return '0';
  return d.custody_oldest ? `${d.custody} 条 · 最早 ${ago(Math.max(0, now - d.custody_oldest))}前` : `${d.custody} 条`;
}

function newKey() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function mount(view) {
  const table = h('div', {id: 'device-table'});
  const secret = h('div', {id: 'key-once', class: 'card key-once', hidden: true});

  function showKey(device, key) {
    const lines = [['设备编号', device.id], ['窗口', device.window || '—'], ['通信', transportName(device.transport)],
      ...(device.transport === 'rs485' ? [['总线', String(device.bus)], ['地址', String(device.address)]] : []),
      ['板型', BOARDS[device.board] || device.board || '—'], ['设备密钥', key]];
    clear(secret, h('h2', {text: '配置信息（密钥只显示这一次）'}),
      h('dl', {class: 'facts wide'}, lines.map(([k, v]) => [h('dt', {text: k}), h('dd', {class: k === '设备密钥' ? 'key' : '', text: v})])),
      h('p', {class: 'muted', text: '用 tools/flash.py provision 写入评价器（设备编号、窗口、地址和密钥须与上面一致）；写入后关闭本框，密钥不会再显示。'}),
      h('button', {type: 'button', id: 'key-done', text: '已写入，关闭', onclick: () => { clear(secret); secret.hidden = true; }}));
    secret.hidden = false;
    secret.scrollIntoView({block: 'nearest'});
  }

  async function change(method, path, body, done) {
    try {
      const result = await api(method, path, body);
      if (done) done(result);
      await load();
      return true;
    } catch (e) {
      toast(`操作失败：${e.message}`, true);
      return false;
    }
  }

  function row(d) {
    const act = (text, cls, fn) => h('button', {type: 'button', class: `small ${cls}`, text, onclick: fn});
    return h('tr', {dataset: {device: d.id}},
      h('td', {}, h('code', {text: d.id})), h('td', {text: d.name || '—'}), h('td', {text: d.window || '—'}),
      h('td', {text: transportName(d.transport)}), h('td', {class: 'num', text: d.transport === 'rs485' ? String(d.bus) : '—'}),
      h('td', {class: 'num', text: d.transport === 'rs485' ? String(d.address) : '—'}), h('td', {text: d.firmware || '—'}),
      h('td', {class: 'custody', text: custodyText(d)}),
      h('td', {}, h('span', {class: `badge ${d.online ? 'on' : 'off'}`, text: d.online ? '在线' : '离线'}), ' ', h('span', {class: 'muted', text: d.last_seen ? when(d.last_seen) : ''})),
      h('td', {class: 'actions'},
        act('改名', 'rename', () => { const name = prompt(`${d.id} 的新名称`, d.name); if (name !== null) change('PATCH', `/api/v1/devices/${encodeURIComponent(d.id)}`, {name: name.trim()}); }),
        act('换窗口', 'move', () => { const w = prompt(`${d.id} 移到哪个窗口`, d.window); if (w !== null) change('PATCH', `/api/v1/devices/${encodeURIComponent(d.id)}`, {window: w.trim()}); }),
        act('重新生成密钥', 'rekey', () => {
          if (!confirm(`为 ${d.id} 生成新密钥？旧密钥立即失效，评价器需重新写入。`)) return;
          const key = newKey();
          change('PATCH', `/api/v1/devices/${encodeURIComponent(d.id)}`, {key}, (dev) => showKey(dev, key));
        }),
        act('删除', 'remove danger', () => { if (confirm(`删除设备 ${d.id}？`)) change('DELETE', `/api/v1/devices/${encodeURIComponent(d.id)}`); })));
  }

  async function load() {
    try {
      const devices = await get('/api/v1/devices');
      clear(table, h('div', {class: 'table-wrap'}, h('table', {class: 'data devices'},
        h('thead', {}, h('tr', {}, ['设备编号', '名称', '窗口', '通信', '总线', '地址', '固件', '待中心确认', '状态', '操作'].map((t) => h('th', {text: t})))),
        h('tbody', {}, devices.length ? devices.map(row) : h('tr', {}, h('td', {colspan: 10, class: 'muted', text: '尚无设备'}))))));
    } catch (e) {
      clear(table, h('p', {class: 'error', text: `读取失败：${e.message}`}));
    }
  }

  const form = addForm(async (spec) => {
    const key = newKey();
    return change('POST', '/api/v1/devices', Object.assign(spec, {key}), (dev) => showKey(dev, key));
  });
  clear(view, h('div', {class: 'devices-page'},
    h('div', {class: 'page-head'}, h('h1', {text: '设备'})),
    secret,
    h('section', {class: 'block'}, h('h2', {text: '评价器'}), table),
    h('section', {class: 'block'}, h('h2', {text: '添加评价器'}), form)));
  load();
}

function addForm(submit) {
  const field = (label, input) => h('label', {}, label, input);
  const id = h('input', {id: 'dev-id', required: true, maxlength: 24, pattern: '[A-Za-z0-9._\\-]+', placeholder: 'ev-3c71bf0a12cd'});
  const name = h('input', {id: 'dev-name', maxlength: 60, placeholder: '一号窗口评价器'});
  const window_ = h('input', {id: 'dev-window', maxlength: 16, placeholder: 'A01'});
  const transport = h('select', {id: 'dev-transport'}, h('option', {value: 'rs485', text: 'RS-485'}), h('option', {value: 'mqtt', text: 'Wi-Fi'}));
  const bus = h('input', {id: 'dev-bus', type: 'number', min: 0, max: 247, value: 0});
  const address = h('input', {id: 'dev-address', type: 'number', min: 1, max: 247, value: 1});
  const board = h('select', {id: 'dev-board'}, h('option', {value: 'five_button', text: '五键'}), h('option', {value: 'touch', text: '触摸屏'}));
  const rs485Only = [field('总线', bus), field('地址', address)];
  transport.addEventListener('change', () => { for (const f of rs485Only) f.hidden = transport.value !== 'rs485'; });
  const form = h('form', {id: 'device-add', class: 'form-grid'},
    field('设备编号', id), field('名称', name), field('窗口', window_), field('通信', transport), rs485Only, field('板型', board),
    h('button', {type: 'submit', id: 'dev-add', text: '添加并生成密钥'}));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const spec = {id: id.value.trim(), name: name.value.trim(), window: window_.value.trim(), transport: transport.value, board: board.value};
    if (transport.value === 'rs485') Object.assign(spec, {bus: Number(bus.value), address: Number(address.value)});
    if (await submit(spec)) form.reset();
  });
  return form;
}
