// DOM building without innerHTML (every text from the gateway goes in as text, never as markup)
// and the console's formats: China time, ages, sizes.

export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const TZ = 'Asia/Shanghai';
const timeFmt = new Intl.DateTimeFormat('zh-CN', {timeZone: TZ, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false});
const dateTimeFmt = new Intl.DateTimeFormat('zh-CN', {timeZone: TZ, month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false});
const dayFmt = new Intl.DateTimeFormat('en-CA', {timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit'});

// seconds since the epoch -> "14:03:22" today, "12/01 09:15" otherwise
export function when(epoch) {
  if (!epoch) return '—';
  const d = new Date(epoch * 1000);
  return dayFmt.format(d) === today() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} 秒`;
  if (s < 3600) return `${Math.floor(s / 60)} 分钟`;
  if (s < 86400) return `${Math.floor(s / 3600)} 小时 ${Math.floor((s % 3600) / 60)} 分`;
  return `${Math.floor(s / 86400)} 天`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i >= 3 ? 1 : 0)} ${units[i]}`;
}

export function percent(ratio, digits = 1) {
  return ratio === null || ratio === undefined ? '—' : `${(ratio * 100).toFixed(digits)}%`;
}

// YYYY-MM-DD in China time, `offset` days from today
export function today(offset = 0) {
  return dayFmt.format(new Date(Date.now() + offset * 86400000));
}

let toastTimer = null;
export function toast(message, bad = false) {
  const box = document.getElementById('toast');
  box.textContent = message;
  box.classList.toggle('bad', bad);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

export function transportName(transport) {
  return transport === 'rs485' ? 'RS-485' : 'Wi-Fi';
}
