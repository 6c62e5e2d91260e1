// 评价 (operators only): a period's counts per window, staff and matter, satisfaction rate, score
// and grade (GET /api/v1/ratings/summary), today's ratings by hour and the week by window.

import {get} from './api.js';
import {h, clear, today, toast} from './util.js';
import {stackedBars, legend} from './charts.js';

export const LEVELS = ['非常满意', '满意', '基本满意', '不满意', '非常不满意'];
export const SERIES = LEVELS.map((name, i) => ({name, cls: `ser-${i + 1}`}));
const BY = {window: '窗口', staff: '工作人员', matter: '事项'};

// a period picker shared with the bad-rating list: 今天 / 近7天 / 自定义
export function periodPicker(onChange, initial = 'today') {
  const from = h('input', {type: 'date', id: 'period-from', value: today(-6)});
  const to = h('input', {type: 'date', id: 'period-to', value: today()});
  const custom = h('span', {class: 'custom', hidden: true}, from, h('span', {text: '至'}), to,
    h('button', {type: 'button', id: 'period-apply', text: '查询', onclick: () => emit('custom')}));
  const buttons = {
    today: h('button', {type: 'button', class: 'seg', id: 'period-today', text: '今天', onclick: () => emit('today')}),
    week: h('button', {type: 'button', class: 'seg', id: 'period-week', text: '近7天', onclick: () => emit('week')}),
    custom: h('button', {type: 'button', class: 'seg', id: 'period-custom', text: '自定义', onclick: () => { select('custom'); custom.hidden = false; }}),
  };
  function select(name) {
    for (const [key, b] of Object.entries(buttons)) b.classList.toggle('active', key === name);
    custom.hidden = name !== 'custom';
  }
  function emit(name) {
    select(name);
    const range = name === 'today' ? [today(), today()] : name === 'week' ? [today(-6), today()] : [from.value, to.value];
    if (!range[0] || !range[1] || range[0] > range[1]) { toast('请选择有效的日期范围', true); return; }
    onChange(range[0], range[1]);
  }
  const box = h('div', {class: 'period'}, Object.values(buttons), custom);
  box.start = () => emit(initial);
  return box;
}

// the summary's satisfaction_rate is already a percentage (one decimal)
function rate(value) {
  return value === null || value === undefined ? '—' : `${Number(value).toFixed(1)}%`;
}

function counts(row) {
  return [1, 2, 3, 4, 5].map((l) => (row.counts || {})[l] || 0);
}

function gradeClass(grade) {
  return {优秀: 'g-a', 良好: 'g-b', 一般: 'g-c', 较差: 'g-d'}[grade] || '';
}

function totals(total) {
  return h('div', {class: 'tiles', id: 'rating-totals'},
    [['评价数', String(total.rated ?? 0)], ['未评价', String(total.not_rated ?? 0)],
     ['满意率', rate(total.satisfaction_rate)], ['得分', total.score === null || total.score === undefined ? '—' : Number(total.score).toFixed(1)],
     ['等级', total.grade || '—']].map(([label, value]) =>
      h('div', {class: `tile ${label === '等级' ? gradeClass(value) : ''}`}, h('div', {class: 'tile-label', text: label}), h('div', {class: 'tile-value', text: value}))));
}

function table(data) {
  const head = h('tr', {}, h('th', {text: BY[data.by] || '名称'}), LEVELS.map((l) => h('th', {class: 'num', text: l})),
    ['未评价', '满意率', '得分', '等级'].map((t) => h('th', {class: 'num', text: t})));
  const line = (row, cls) => h('tr', {class: cls}, h('td', {text: row.label || row.key || '—'}),
    counts(row).map((n) => h('td', {class: 'num', text: String(n)})),
    h('td', {class: 'num', text: String(row.not_rated ?? 0)}), h('td', {class: 'num', text: rate(row.satisfaction_rate)}),
    h('td', {class: 'num', text: row.score === null || row.score === undefined ? '—' : Number(row.score).toFixed(1)}),
    h('td', {class: `num ${gradeClass(row.grade)}`, text: row.grade || '—'}));
  return h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: `by-${data.by}`},
    h('thead', {}, head), h('tbody', {}, (data.rows || []).map((r) => line(r, '')), data.total ? line(Object.assign({label: '合计'}, data.total), 'total') : null)));
}

// drawn at the box's own width, so its text stays readable on a phone
function chartWidth(box) {
  return Math.max(300, Math.min(900, box.clientWidth - 26));
}

export function mount(view) {
  let by = 'window';
  const totalsBox = h('div', {id: 'totals'});
  const tableBox = h('div', {id: 'summary-table'});
  const tabs = h('div', {class: 'tabs'}, Object.entries(BY).map(([key, name]) =>
    h('button', {type: 'button', class: `seg ${key === by ? 'active' : ''}`, id: `by-tab-${key}`, text: `按${name}`, onclick: (e) => {
      by = key;
      for (const b of tabs.children) b.classList.toggle('active', b === e.target);
      load();
    }})));
  const hourChart = h('div', {id: 'chart-hours', class: 'chart-box'});
  const weekChart = h('div', {id: 'chart-week', class: 'chart-box'});
  let range = [today(), today()];

  async function load() {
    try {
      const data = await get(`/api/v1/ratings/summary?from=${range[0]}&to=${range[1]}&by=${by}`);
      clear(totalsBox, totals(data.total || {}));
      clear(tableBox, table(data));
    } catch (e) {
      clear(tableBox, h('p', {class: 'error', text: `读取失败：${e.message}`}));
    }
  }

  async function charts() {
    try {
      const [hours, week] = await Promise.all([
        get(`/api/v1/ratings/summary?from=${today()}&to=${today()}&by=hour`),
        get(`/api/v1/ratings/summary?from=${today(-6)}&to=${today()}&by=window`)]);
      const byHour = new Map((hours.rows || []).map((r) => [Number(r.key), r]));
      const hourRows = [];
      for (let hr = 7; hr <= 19; hr += 1) hourRows.push({label: `${hr}时`, values: byHour.has(hr) ? counts(byHour.get(hr)) : [0, 0, 0, 0, 0]});
      for (const [hr, r] of byHour) if (hr < 7 || hr > 19) hourRows.push({label: `${hr}时`, values: counts(r)});
      clear(hourChart, h('h3', {text: '今日各时段评价'}), stackedBars(hourRows, SERIES, {title: '今日各时段评价', width: chartWidth(hourChart)}), legend(SERIES));
      const weekRows = (week.rows || []).map((r) => ({label: r.label || r.key, values: counts(r)}));
      clear(weekChart, h('h3', {text: '近7天各窗口评价'}),
        weekRows.length ? stackedBars(weekRows, SERIES, {title: '近7天各窗口评价', width: chartWidth(weekChart)}) : h('p', {class: 'muted', text: '暂无评价'}), legend(SERIES));
    } catch (e) {
      clear(hourChart, h('p', {class: 'error', text: `图表读取失败：${e.message}`}));
    }
  }

  const picker = periodPicker((from, to) => { range = [from, to]; load(); });
  clear(view, h('div', {class: 'ratings'},
    h('div', {class: 'page-head'}, h('h1', {text: '评价统计'})),
    h('section', {class: 'block'}, picker, totalsBox),
    h('section', {class: 'block'}, tabs, tableBox),
    h('section', {class: 'block charts'}, hourChart, weekChart)));
  picker.start();
  charts();
}
