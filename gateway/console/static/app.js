// The console's shell: session (login form, logout), navigation by role, hash routing.

import {api, setSession, whenUnauthorized, ApiError} from './api.js';
import {h, clear} from './util.js';
import * as hall from './hall.js';
import * as ratings from './ratings.js';
import * as bad from './bad.js';
import * as devices from './devices.js';
import * as alerts from './alerts.js';

const PAGES = {
  hall: {title: '大厅', page: hall},
  ratings: {title: '评价', page: ratings},
  bad: {title: '差评', page: bad},
  devices: {title: '设备', page: devices},
  alerts: {title: '告警', page: alerts},
};
// Art. 4: only the operator's pages ever show how a window was rated
const BY_ROLE = {
  operator: ['hall', 'ratings', 'bad', 'devices', 'alerts'],
  technician: ['hall', 'devices', 'alerts'],
  viewer: ['hall'],
};
const ROLE_NAMES = {operator: '管理员', technician: '技术员', viewer: '大厅屏'};

let session = null;
let unmount = null;

const $ = (id) => document.getElementById(id);

function stopPage() {
  if (unmount) unmount();
  unmount = null;
}

function showLogin(message = '') {
  stopPage();
  session = null;
  setSession(null);
  document.body.className = 'signed-out';
  document.documentElement.classList.remove('lobby');
  $('nav').hidden = true;
  $('who').hidden = true;
  clear($('view'));
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('login-password').value = '';
  $('login-user').focus();
}

function start(s) {
  session = s;
  setSession(s);
  const pages = BY_ROLE[s.role] || [];
  document.body.className = `role-${s.role}` + (s.role === 'viewer' ? ' lobby' : '');
  document.documentElement.classList.toggle('lobby', s.role === 'viewer');   // large type: rem grows
  $('login').hidden = true;
  $('who-name').textContent = `${s.user || ''}（${ROLE_NAMES[s.role] || s.role}）`;
  $('who').hidden = false;
  clear($('nav'), pages.map((name) => h('a', {href: `#/${name}`, id: `nav-${name}`, text: PAGES[name].title})));
  $('nav').hidden = pages.length < 2;
  route();
}

function route() {
  if (!session) return;
  const pages = BY_ROLE[session.role] || [];
  let name = location.hash.replace(/^#\/?/, '');
  if (!pages.includes(name)) {
    name = pages[0];
    if (!name) return;
    history.replaceState(null, '', `#/${name}`);
  }
  stopPage();
  for (const a of $('nav').children) a.classList.toggle('active', a.id === `nav-${name}`);
  const view = clear($('view'));
  view.dataset.page = name;
  unmount = PAGES[name].page.mount(view, {role: session.role, user: session.user}) || null;
}

async function login(event) {
  event.preventDefault();
  const button = $('login-submit');
  button.disabled = true;
  $('login-error').textContent = '';
  try {
    start(await api('POST', '/api/v1/session', {user: $('login-user').value.trim(), password: $('login-password').value}));
  } catch (e) {
    const status = e instanceof ApiError ? e.status : 0;
    $('login-error').textContent = status === 401 ? '用户名或密码错误'
      : status === 429 ? '尝试次数过多，请稍后再试' : `登录失败：${e.message}`;
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try { await api('DELETE', '/api/v1/session'); } catch { /* signed out either way */ }
  showLogin();
}

async function boot() {
  whenUnauthorized(() => showLogin('登录已过期，请重新登录'));
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  try {
    start(await api('GET', '/api/v1/session'));
  } catch {
    showLogin();
  }
}

boot();
