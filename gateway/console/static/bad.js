// 差评 (operators only): bad ratings with their tags, text and case, and the hall's follow-up
// (pending -> verified -> handled, a note, who and when; PUT /api/v1/ratings/{id}/follow-up).

import {api, get} from './api.js';
import {h, clear, when, toast} from './util.js';
import {periodPicker} from './ratings.js';

const STATES = {pending: '待处理', verified: '已核实', handled: '已处理'};

export function mount(view) {
  let state = 'pending';
  let range = null;
  const list = h('div', {id: 'bad-list', class: 'bad-list'});
  const filters = h('div', {class: 'tabs'}, [['pending', '待处理'], ['verified', '已核实'], ['handled', '已处理'], ['', '全部']].map(([key, name]) =>
    h('button', {type: 'button', class: `seg ${key === state ? 'active' : ''}`, id: `bad-state-${key || 'all'}`, text: name, onclick: (e) => {
      state = key;
      for (const b of filters.children) b.classList.toggle('active', b === e.target);
      load();
    }})));

  async function load() {
    if (!range) return;
    const query = `from=${range[0]}&to=${range[1]}` + (state ? `&state=${state}` : '');
    try {
      const data = await get(`/api/v1/ratings/bad?${query}`);
      const items = data.items || [];
      clear(list, items.length ? items.map((item) => itemCard(item, load)) : h('p', {class: 'muted none', text: '这段时间没有此状态的差评'}));
    } catch (e) {
      clear(list, h('p', {class: 'error', text: `读取失败：${e.message}`}));
    }
  }

  const picker = periodPicker((from, to) => { range = [from, to]; load(); }, 'week');
  clear(view, h('div', {class: 'bad'},
    h('div', {class: 'page-head'}, h('h1', {text: '差评处理'})),
    h('section', {class: 'block'}, picker, filters),
    h('section', {class: 'block'}, list)));
  picker.start();
}

function itemCard(item, reload) {
  const f = item.follow_up || {state: 'pending'};
  const note = h('textarea', {class: 'note', rows: 2, maxlength: 500, placeholder: '处理说明（核实情况、整改措施）'});
  note.value = f.note || '';
  async function set(next, button) {
    button.disabled = true;
    try {
      await api('PUT', `/api/v1/ratings/${encodeURIComponent(item.rating_id)}/follow-up`, {state: next, note: note.value.trim()});
      toast(`已标记为${STATES[next]}`);
      reload();
    } catch (e) {
      toast(`保存失败：${e.message}`, true);
      button.disabled = false;
    }
  }
  const tags = (item.tags || []).map((t) => h('span', {class: 'tag', text: typeof t === 'object' ? (t.label || t.code) : t}));
  return h('article', {class: `bad-item card st-${f.state}`, dataset: {rating: item.rating_id}},
    h('header', {},
      h('span', {class: `lv lv${item.level}`, text: item.level_name}),
      h('strong', {text: `窗口 ${item.window || '—'}`}),
      h('span', {class: 'muted', text: when(item.time)}),
      h('span', {class: `state st-${f.state}`, text: STATES[f.state] || f.state})),
    h('dl', {class: 'facts wide'},
      [['工作人员', item.staff_name ? `${item.staff_name}（${item.staff_id || ''}）` : item.staff_id || '—'],
       ['事项', item.matter_name || item.matter_code || '—'], ['办件', item.serial || (item.case_id ? `#${item.case_id}` : '—')],
       ['设备', item.device || '—']].map(([k, v]) => [h('dt', {text: k}), h('dd', {text: v})])),
    tags.length ? h('div', {class: 'tags'}, tags) : null,
    item.text ? h('blockquote', {class: 'rating-text', text: item.text}) : null,
    f.by ? h('div', {class: 'muted', text: `${STATES[f.state] || f.state}：${f.by}，${when(f.at)}`}) : null,
    note,
    h('div', {class: 'actions'},
      h('button', {type: 'button', class: 'verify', text: '核实', disabled: f.state !== 'pending', onclick: (e) => set('verified', e.target)}),
      h('button', {type: 'button', class: 'handle', text: '已处理', disabled: f.state === 'handled', onclick: (e) => set('handled', e.target)})));
}
