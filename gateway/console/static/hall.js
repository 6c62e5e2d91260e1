// 大厅: every window's evaluator, the gateway's health and its alarms, live over server-sent
// events (`hall`: the whole view when it changed; `rating`: a rating was just stored there).

import {api, get} from './api.js';
import {h, clear, when, ago, bytes, percent, toast, transportName} from './util.js';

const UPLINK = {idle: ['空闲', 'ok'], up: ['正常', 'ok'], backoff: ['重试中', 'warn'], down: ['中断', 'bad'], error: ['故障', 'bad']};
const ALARMS = {
  store_full: '存储已满', store_fill: '存储将满', store_unwritable: '存储写入失败', corrupt_store: '存储损坏',
  store_short: '存储记录缺失', replay: '重放的评价', bus_unavailable: '总线不可用', uplink_error: '上行出错',
  broker_files: '消息服务器配置', http_unauthorized: '错误凭据访问', callbacks_full: '回调队列已满',
  dead_letters_evicted: '死信被淘汰', console_login_flood: '登录尝试过多', glyph_missing: '缺少字形',
  glyph_overflow: '字形缓存已满', alert_check: '告警检查出错', alert_dropped: '告警被丢弃',
  alert_failed: '告警发送失败', alert_store: '告警存储出错', corrupt_history: '评价历史损坏',
  history_error: '评价历史出错', history_full: '评价历史队列已满', history_unavailable: '评价历史不可用',
};
const FLASH_MS = 4000;

export function mount(view, ctx) {
  const canAck = ctx.role === 'operator' || ctx.role === 'technician';
  const live = h('span', {id: 'live', class: 'live off', text: '连接中…'});
  const health = h('div', {id: 'health', class: 'tiles'});
  const alarms = h('ul', {id: 'alarms', class: 'alarms'});
  const grid = h('div', {id: 'windows', class: 'windows'});
  const summary = h('span', {id: 'online-count', class: 'muted'});
  clear(view, h('div', {class: 'hall'},
    h('div', {class: 'page-head'}, h('h1', {text: '大厅'}), summary, live),
    h('section', {class: 'block'}, h('h2', {text: '网关'}), health),
    h('section', {class: 'block', id: 'alarm-block'}, h('h2', {text: '报警'}), alarms),
    h('section', {class: 'block'}, h('h2', {text: '窗口'}), grid)));

  const cards = new Map();
  let last = null;
  let offset = 0;          // server time minus ours, for "ago" between updates
  let source = null;
  let retry = null;

  function render(data) {
    last = data;
    offset = data.time - Date.now() / 1000;
    document.getElementById('hall-name').textContent = data.hall ? `${data.hall} · 大厅管理台` : '大厅管理台';
    renderHealth(health, data);
    renderAlarms(alarms, data.alarms || [], canAck, ack);
    const seen = new Set();
    let online = 0;
    let total = 0;
    for (const w of data.windows || []) {
      const key = `${w.window}|${w.device ? w.device.id : ''}`;
      seen.add(key);
      let card = cards.get(key);
      if (!card) {
        card = h('article', {class: 'win-card', dataset: {window: w.window, device: w.device ? w.device.id : ''}});
        cards.set(key, card);
      }
      fillCard(card, w, data.time);
      grid.append(card);   // keeps the server's order; moving an element keeps its flash
      if (w.device) { total += 1; online += w.device.online ? 1 : 0; }
    }
    for (const [key, card] of cards) {
      if (!seen.has(key)) { card.remove(); cards.delete(key); }
    }
    summary.textContent = `评价器在线 ${online} / ${total}`;
  }

  function onRating(r) {
    for (const card of grid.querySelectorAll('.win-card')) {
      if (card.dataset.window !== r.window) continue;
      const line = card.querySelector('.last-rating');
      if (line) clear(line, ...lastRating(r));
      card.classList.remove('flash');
      void card.offsetWidth;   // restart the animation
      card.classList.add('flash');
      clearTimeout(card.flashTimer);
      card.flashTimer = setTimeout(() => card.classList.remove('flash'), FLASH_MS);
    }
  }

  async function ack(name, button) {
    button.disabled = true;
    try {
      await api('POST', `/api/v1/alarms/${encodeURIComponent(name)}/ack`);
      toast('已确认');
      render(await get('/api/v1/hall'));
    } catch (e) {
      toast(`确认失败：${e.message}`, true);
      button.disabled = false;
    }
  }

  function connect() {
    source = new EventSource('/api/v1/events');
    source.addEventListener('open', () => { live.textContent = '实时'; live.className = 'live on'; });
    source.addEventListener('hall', (e) => render(JSON.parse(e.data)));
    source.addEventListener('rating', (e) => onRating(JSON.parse(e.data)));
    source.addEventListener('error', () => {
      live.textContent = '连接中断，重连中…';
      live.className = 'live off';
      if (source.readyState === EventSource.CLOSED) {   // refused (401, 429): check, then retry
        source.close();
        get('/api/v1/hall').then(render).catch(() => {});
        retry = setTimeout(connect, 5000);
      }
    });
  }

  get('/api/v1/hall').then(render).catch((e) => { if (e.status !== 401) toast(`读取失败：${e.message}`, true); });
  connect();
  const ticker = setInterval(() => { if (last) render(Object.assign({}, last, {time: Date.now() / 1000 + offset})); }, 5000);
  return () => {
    clearInterval(ticker);
    clearTimeout(retry);
    if (source) source.close();
  };
}

function tile(label, value, state, note) {
  return h('div', {class: `tile ${state || ''}`}, h('div', {class: 'tile-label', text: label}),
    h('div', {class: 'tile-value', text: value}), note ? h('div', {class: 'tile-note', text: note}) : null);
}

function renderHealth(box, data) {
  const g = data.gateway || {};
  const up = g.uplink || {};
  const [upText, upState] = UPLINK[up.state] || [up.state || '—', 'warn'];
  const pending = (g.outbox || {}).ratings + (g.outbox || {}).cases;
  const fill = (g.outbox || {}).fill || 0;
  const age = up.oldest_pending_age_s;
  const buses = g.buses || [];
  clear(box,
    tile('上行', upText, upState, up.since ? `自 ${when(up.since)}` : null),
    tile('最早待传', age ? ago(age) : '无', age > 3600 ? 'bad' : age > 600 ? 'warn' : 'ok'),
    tile('待传积压', String(pending || 0), fill >= 0.8 ? 'bad' : fill >= 0.5 ? 'warn' : 'ok', `占容量 ${percent(fill)}`),
    tile('磁盘剩余', bytes(g.disk_free_bytes), g.disk_free_bytes !== null && g.disk_free_bytes < 200e6 ? 'bad' : 'ok'),
    tile('消息服务器', g.broker_connected ? '已连接' : '已断开', g.broker_connected ? 'ok' : 'bad'),
    buses.length
      ? buses.map((b, i) => tile(`RS-485 总线 ${i}`, b.open ? '正常' : '未打开', b.open ? (b.errors ? 'warn' : 'ok') : 'bad', `无应答或受干扰 ${b.errors} 次`))
      : tile('RS-485 总线', '未配置', ''));
}

function renderAlarms(list, alarms, canAck, ack) {
  document.getElementById('alarm-block').classList.toggle('quiet', alarms.length === 0);
  if (!alarms.length) {
    clear(list, h('li', {class: 'none', text: '无报警'}));
    return;
  }
  clear(list, alarms.map((a) => h('li', {class: `alarm ${a.acked_at ? 'acked' : 'open'}`, dataset: {alarm: a.name}},
    h('div', {class: 'alarm-main'},
      h('strong', {text: ALARMS[a.name] || a.name}), h('code', {text: a.name}),
      h('span', {class: 'muted', text: `${a.count} 次 · 最近 ${when(a.last_at)}`})),
    a.detail ? h('div', {class: 'alarm-detail', text: a.detail}) : null,
    a.acked_at
      ? h('div', {class: 'acked-by', text: `已由 ${a.acked_by} 于 ${when(a.acked_at)} 确认`})
      : canAck ? h('button', {class: 'ack', type: 'button', text: '确认', onclick: (e) => ack(a.name, e.target)}) : null)));
}

function lastRating(r) {
  const out = [h('span', {class: 'muted', text: '最近评价 '}), h('span', {class: 'rating-time', text: when(r.time)})];
  if (r.level_name) out.push(h('span', {class: `lv lv${r.level || 0}`, text: r.level_name}));   // operators only
  return out;
}

function fillCard(card, w, now) {
  const d = w.device;
  card.classList.toggle('online', !!(d && d.online));
  card.classList.toggle('offline', !!(d && !d.online));
  card.classList.toggle('nodev', !d);
  const head = h('header', {}, h('span', {class: 'win-no', text: `窗口 ${w.window}`}),
    d ? h('span', {class: `badge ${d.online ? 'on' : 'off'}`, text: d.online ? '在线' : '离线'}) : h('span', {class: 'badge none', text: '无评价器'}));
  const staff = w.staff_name !== undefined
    ? h('div', {class: 'staff', text: w.staff_name ? `${w.staff_name}（${w.staff_id}）` : '无人签到'})
    : h('div', {class: 'staff', text: w.staff_id ? `工号 ${w.staff_id}` : '无人签到'});
  const facts = d ? h('dl', {class: 'facts'},
    fact('设备', d.name ? `${d.name} · ${d.id}` : d.id),
    fact(d.online ? '在线自' : '离线自', d.since ? when(d.since) : '本次启动前'),
    fact('最近通信', d.last_seen ? `${ago(now - d.last_seen)}前` : '从未'),
    fact('通信', d.transport === 'rs485' ? `RS-485 · 地址 ${d.address}` : transportName(d.transport)),
    fact('固件', d.firmware || '—'),
    fact('设备待传', String(d.outbox)),
    fact('待中心确认', d.custody ? (d.custody_oldest ? `${d.custody} 条 · 最早 ${ago(Math.max(0, now - d.custody_oldest))}前` : `${d.custody} 条`) : '0'),
    d.transport === 'rs485' ? fact('总线错误', String(d.errors)) : fact('Wi-Fi 信号', d.rssi ? `${d.rssi} dBm` : '—')) : null;
  const rating = h('div', {class: 'last-rating'}, ...(w.last_rating ? lastRating(w.last_rating) : [h('span', {class: 'muted', text: '最近评价 —'})]));
  clear(card, head, staff, facts, rating);
}

function fact(label, value) {
  return [h('dt', {text: label}), h('dd', {text: value})];
}
