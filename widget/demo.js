// The demo page: asks for an org and a token (or takes ?org=&token=&lang=),
// then mounts <member-sync-widget>.  The token stays in this page's memory
// only and is removed from the address bar at once.
import './member-sync-widget.js';

let token = '';
// The widget asks for the token through a global function it is told the
// name of (token-provider), so a host app can hand out fresh tokens.
window.membersyncDemoToken = () => token;

function mount(org, lang) {
  const mountPoint = document.getElementById('mount');
  const w = document.createElement('member-sync-widget');
  w.setAttribute('org', org);
  w.setAttribute('token-provider', 'membersyncDemoToken');
  w.setAttribute('lang', lang);
  const params = new URLSearchParams(location.search);
  if (params.get('api')) w.setAttribute('api-base', params.get('api'));
  if (params.get('transport')) w.setAttribute('transport', params.get('transport'));
  mountPoint.replaceChildren(w);
  document.documentElement.lang = lang;
}

const form = document.getElementById('setup');
const params = new URLSearchParams(location.search);
const lang = params.get('lang') === 'nb' ? 'nb' : 'en';
form.elements.lang.value = lang;
if (params.get('org')) form.elements.org.value = params.get('org');
if (params.get('token')) {
  token = params.get('token');
  form.elements.token.value = token;
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : ''));
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  token = form.elements.token.value.trim();
  mount(form.elements.org.value.trim(), form.elements.lang.value);
});

if (token && form.elements.org.value) mount(form.elements.org.value, lang);
