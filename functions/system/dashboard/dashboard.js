/* The community staff dashboard: an admin token in this tab's sessionStorage, then the admin
 * API (API.md "Administration and data", "Identity", "Risk controls") drawn as charts and lists.
 * Everything shown comes from the API; text from the API is set with textContent, never HTML.
 * window.timebankDashboard exposes the charts (and echarts.getInstanceByDom works) for tests. */
(function () {
  "use strict";

  var TOKEN_KEY = "timebank.admin.token";
  var WHO_KEY = "timebank.admin.who";
  var ZONE = "Asia/Shanghai";
  var RANGE_DAYS = 30;
  var PAGE = 50;
  var CATEGORY_NAMES = { pickup: "接送帮", childcare: "托管帮", tutoring: "辅导帮", parcel: "快递帮",
    companion: "陪护帮", pet: "宠爱帮", volunteer: "志愿帮" };
  var ASSET_NAMES = { service: "服务时", volunteer: "志愿时", skill: "技能共享", green: "绿色生活",
    welfare: "公益帮扶", contribution: "贡献" };
  var FLAG_KINDS = { repeated_pair: "同两户反复互助", rapid_cycle: "短时间内循环转移", backdated: "补录时间过早" };
  var SERIES = [["posted", "发布"], ["accepted", "接单"], ["completed", "完成"], ["cancelled", "取消"]];

  var body = document.body;
  var charts = {};
  var state = { token: null, categories: {}, assets: {} };

  function $(id) { return document.getElementById(id); }

  function show(el, visible) { el.hidden = !visible; }

  function setText(el, text) { el.textContent = text == null ? "" : String(text); }

  function element(tag, className, text) {
    var el = document.createElement(tag);
    if (className) { el.className = className; }
    if (text != null) { el.textContent = String(text); }
    return el;
  }

  // --- the API ---------------------------------------------------------------------------

  function ApiError(status, code, message) {
    this.status = status; this.code = code; this.message = message;
  }

  function fallbackMessage(status) {
    if (status === 401) { return "登录已失效，请重新登录"; }
    if (status === 403) { return "该令牌没有管理员权限"; }
    if (status === 404) { return "接口不存在（服务尚未提供此功能）"; }
    if (status >= 500) { return "服务器暂时不可用，请稍后再试"; }
    return "请求失败（HTTP " + status + "）";
  }

  function api(method, path, payload, token) {
    var headers = { "Accept": "application/json" };
    var bearer = token === undefined ? state.token : token;
    if (bearer) { headers["Authorization"] = "Bearer " + bearer; }
    var init = { method: method, headers: headers, credentials: "omit" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    // Relative to <base> (…/admin/): the API is the same stack, under the same stage prefix.
    var url = new URL("../" + path.replace(/^\//, ""), document.baseURI).toString();
    return fetch(url, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var message = data && typeof data.message === "string" && data.message ? data.message
            : fallbackMessage(response.status);
          throw new ApiError(response.status, data && data.code, message);
        }
        return data;
      });
    }, function () {
      throw new ApiError(0, "NETWORK", "无法连接服务器，请检查网络");
    });
  }

  function messageOf(error) {
    return error instanceof ApiError ? error.message : "页面出错：" + (error && error.message || error);
  }

  // --- login -----------------------------------------------------------------------------

  function showLogin(message) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(WHO_KEY);
    show($("board"), false);
    show($("who"), false);
    show($("login"), true);
    show($("demo-login"), !!body.dataset.demoCode);
    var error = $("login-error");
    setText(error, message || "");
    show(error, !!message);
    body.dataset.state = "login";
  }

  function useToken(token, who) {
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    if (who) { sessionStorage.setItem(WHO_KEY, who); }
    setText($("who-name"), sessionStorage.getItem(WHO_KEY) || "管理员");
    show($("login"), false);
    show($("who"), true);
    show($("board"), true);
    loadBoard();
  }

  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var token = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
    if (!token) { showLogin("请先粘贴管理员令牌"); return; }
    $("token-input").value = "";
    useToken(token, "管理员");
  });

  $("demo-login").addEventListener("click", function () {
    var button = this;
    button.disabled = true;
    api("POST", "v1/auth/wechat", { code: body.dataset.demoCode }, null).then(function (session) {
      button.disabled = false;
      useToken(session.token, session.openid);
    }, function (error) {
      button.disabled = false;
      showLogin(messageOf(error));
    });
  });

  $("logout").addEventListener("click", function () { showLogin(""); });
  $("refresh").addEventListener("click", function () { loadBoard(); });

  // An expired or foreign token sends the page back to the login form with the API's reason.
  function guard(error) {
    if (error instanceof ApiError && (error.status === 401 || (error.status === 403 && error.code === "FORBIDDEN"))) {
      showLogin(error.message);
      return true;
    }
    return false;
  }

  // --- the board -------------------------------------------------------------------------

  function loadBoard() {
    body.dataset.state = "loading";
    var lookups = Promise.all([
      api("GET", "v1/categories").then(function (page) {
        (page.items || []).forEach(function (c) { state.categories[c.id] = c.name; });
      }, function () { /* names fall back to the built-in ones */ }),
      api("GET", "v1/assets").then(function (page) {
        (page.items || []).forEach(function (a) { state.assets[a.id] = a.name; });
      }, function () { /* names fall back to the built-in ones */ })
    ]);
    var sections = [
      loadList(residentsList),
      loadList(disputesList),
      loadList(flagsList),
      lookups.then(loadStats)
    ];
    return Promise.all(sections).then(function () {
      if (body.dataset.state === "loading") { body.dataset.state = "ready"; }
    });
  }

  function notice(text) {
    var el = $("notice");
    setText(el, text);
    show(el, true);
  }

  // --- statistics ------------------------------------------------------------------------

  function today() {
    // en-CA formats as YYYY-MM-DD; the community's dates are Asia/Shanghai dates (API.md).
    return new Intl.DateTimeFormat("en-CA", { timeZone: ZONE, year: "numeric", month: "2-digit",
      day: "2-digit" }).format(new Date());
  }

  function addDays(isoDate, days) {
    var d = new Date(isoDate + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + days);
    return d.toISOString().slice(0, 10);
  }

  function dateRange(from, to) {
    var out = [];
    for (var d = from; d <= to; d = addDays(d, 1)) { out.push(d); }
    return out;
  }

  function categoryName(id) { return state.categories[id] || CATEGORY_NAMES[id] || id; }
  function assetName(id) { return state.assets[id] || ASSET_NAMES[id] || id; }

  function chart(id) {
    if (!charts[id]) {
      charts[id] = echarts.init($(id), null, { renderer: "canvas" });
    }
    return charts[id];
  }

  function number(value, digits) {
    if (value === null || value === undefined || value === "") { return "—"; }
    var n = Number(value);
    if (!isFinite(n)) { return String(value); }
    return digits === undefined ? n.toLocaleString("zh-CN") : n.toFixed(digits);
  }

  // Ratios of the stats API (0.25 = 25 %); a velocity may pass 100 %.
  function share(value) {
    if (value === null || value === undefined) { return "—"; }
    return (Number(value) * 100).toFixed(1) + "%";
  }

  function loadStats() {
    var section = $("stats");
    var error = $("stats-error");
    var to = today();
    var from = addDays(to, -(RANGE_DAYS - 1));
    section.dataset.state = "loading";
    setText($("stats-range"), from + " 至 " + to);
    return api("GET", "v1/admin/stats?from=" + from + "&to=" + to).then(function (stats) {
      show(error, false);
      drawStats(stats, from, to);
      section.dataset.state = "ready";
    }, function (failure) {
      if (guard(failure)) { return; }
      setText(error, "统计数据加载失败：" + messageOf(failure));
      show(error, true);
      section.dataset.state = "error";
    });
  }

  function drawStats(stats, from, to) {
    var byDay = stats.by_day || [];
    var days = dateRange(from, to);
    var index = {};
    days.forEach(function (d, i) { index[d] = i; });
    var daily = {};
    var totals = { posted: 0, accepted: 0, completed: 0, cancelled: 0, minutes_credited: 0 };
    SERIES.forEach(function (s) { daily[s[0]] = days.map(function () { return 0; }); });
    var minutesByCategory = {};
    byDay.forEach(function (row) {
      var i = index[row.date];
      SERIES.forEach(function (s) {
        var v = Number(row[s[0]] || 0);
        totals[s[0]] += v;
        if (i !== undefined) { daily[s[0]][i] += v; }
      });
      var minutes = Number(row.minutes_credited || 0);
      totals.minutes_credited += minutes;
      minutesByCategory[row.category] = (minutesByCategory[row.category] || 0) + minutes;
    });
    section_data_flag(byDay.length > 0);

    var accept = stats.accept_minutes || {};
    var ledger = stats.ledger || {};
    var figures = [
      ["发布", number(totals.posted)], ["接单", number(totals.accepted)], ["完成", number(totals.completed)],
      ["取消", number(totals.cancelled)], ["计入时长（小时）", number(totals.minutes_credited / 60, 1)],
      ["活跃居民", number(stats.active_residents)], ["活跃家庭", number(stats.active_households)],
      ["接单用时 P50（分钟）", number(accept.p50)], ["接单用时 P90（分钟）", number(accept.p90)],
      ["30 天流通率", share(ledger.velocity_30d)], ["前 10% 志愿者所得占比", share(ledger.top10_share)],
      ["沉睡账户（近 30 天未活跃）", number(ledger.dormant_accounts)]
    ];
    var box = $("figures");
    box.textContent = "";
    figures.forEach(function (f) {
      var item = element("div", "figure");
      item.appendChild(element("div", "label", f[0]));
      item.appendChild(element("div", "value", f[1]));
      box.appendChild(item);
    });

    chart("chart-daily").setOption({
      tooltip: { trigger: "axis" },
      legend: { data: SERIES.map(function (s) { return s[1]; }), top: 0 },
      grid: { left: 36, right: 12, top: 32, bottom: 28 },
      xAxis: { type: "category", data: days.map(function (d) { return d.slice(5); }) },
      yAxis: { type: "value", minInterval: 1 },
      series: SERIES.map(function (s) {
        return { id: s[0], name: s[1], type: "line", showSymbol: false, data: daily[s[0]] };
      })
    }, true);

    var categories = Object.keys(minutesByCategory).sort(function (a, b) {
      return minutesByCategory[a] - minutesByCategory[b];
    });
    chart("chart-categories").setOption({
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 72, right: 24, top: 12, bottom: 28 },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: categories.map(categoryName) },
      series: [{ id: "minutes_credited", name: "计入时长", type: "bar",
        data: categories.map(function (c) { return { id: c, name: categoryName(c), value: minutesByCategory[c] }; }) }]
    }, true);

    chart("chart-accept").setOption({
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 48, right: 12, top: 24, bottom: 28 },
      xAxis: { type: "category", data: ["P50", "P90"] },
      yAxis: { type: "value" },
      series: [{ id: "accept_minutes", name: "接单用时", type: "bar", barMaxWidth: 56,
        label: { show: true, position: "top" },
        data: [{ id: "p50", value: accept.p50 == null ? null : accept.p50 },
               { id: "p90", value: accept.p90 == null ? null : accept.p90 }] }]
    }, true);

    var outstanding = ledger.outstanding || {};
    var assets = Object.keys(outstanding).sort();
    chart("chart-ledger").setOption({
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 56, right: 12, top: 24, bottom: 28 },
      xAxis: { type: "category", data: assets.map(assetName) },
      yAxis: { type: "value" },
      series: [{ id: "outstanding", name: "未兑付", type: "bar", barMaxWidth: 56,
        label: { show: true, position: "top" },
        data: assets.map(function (a) { return { id: a, name: assetName(a), value: outstanding[a] }; }) }]
    }, true);

    var list = $("top-volunteers");
    list.textContent = "";
    (stats.top_volunteers || []).forEach(function (v) {
      list.appendChild(element("li", null, (v.name || v.resident_id) + " · " + number(v.minutes) + " 分钟"));
    });
    if (!list.children.length) { list.appendChild(element("li", "empty", "暂无")); }
  }

  function section_data_flag(hasData) { $("stats").dataset.hasData = hasData ? "true" : "false"; }

  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) { charts[id].resize(); });
  });

  // --- lists -----------------------------------------------------------------------------

  function when(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleString("zh-CN", { timeZone: ZONE, hour12: false });
  }

  function listOf(name, path, render, noun) {
    return { name: name, path: path, render: render, noun: noun, cursor: null, shown: 0 };
  }

  function loadList(list, more) {
    var section = $(list.name);
    var error = $(list.name + "-error");
    var ul = $(list.name + "-list");
    if (!more) { list.cursor = null; list.shown = 0; ul.textContent = ""; }
    section.dataset.state = "loading";
    var path = list.path + "&limit=" + PAGE + (more && list.cursor ? "&cursor=" + encodeURIComponent(list.cursor) : "");
    return api("GET", path).then(function (page) {
      show(error, false);
      (page.items || []).forEach(function (item) { ul.appendChild(list.render(item, list)); list.shown += 1; });
      list.cursor = page.next_cursor || null;
      show($(list.name + "-more"), !!list.cursor);
      updateCount(list);
      section.dataset.state = "ready";
    }, function (failure) {
      if (guard(failure)) { return; }
      setText(error, list.noun + "加载失败：" + messageOf(failure));
      show(error, true);
      section.dataset.state = "error";
    });
  }

  function updateCount(list) {
    setText($(list.name + "-count"), list.shown + (list.cursor ? "+" : ""));
    show($(list.name + "-empty"), list.shown === 0);
  }

  function removeRow(li, list) {
    li.remove();
    list.shown -= 1;
    updateCount(list);
  }

  function renderResident(r, list) {
    var li = element("li");
    li.dataset.residentId = r.id;
    li.appendChild(element("div", "title", r.name));
    li.appendChild(element("div", "meta", [r.building + " 栋 " + r.unit + " 单元 " + r.room,
      r.phone, r.birth_year ? r.birth_year + " 年生" : ""].filter(Boolean).join(" · ")));
    li.appendChild(element("div", "meta", "提交于 " + when(r.created_at)));
    var actions = element("div", "row-actions");
    var approve = element("button", "ok", "通过");
    approve.type = "button";
    approve.dataset.action = "verify";
    var reject = element("button", "bad", "驳回");
    reject.type = "button";
    reject.dataset.action = "reject";
    actions.appendChild(approve);
    actions.appendChild(reject);
    li.appendChild(actions);
    var error = $("residents-error");

    approve.addEventListener("click", function () {
      approve.disabled = reject.disabled = true;
      api("POST", "v1/admin/residents/" + encodeURIComponent(r.id) + "/verify", {}).then(function (done) {
        removeRow(li, list);
        notice("已通过 " + done.name + " 的认证");
      }, function (failure) {
        approve.disabled = reject.disabled = false;
        if (guard(failure)) { return; }
        setText(error, "认证失败：" + messageOf(failure));
        show(error, true);
      });
    });

    reject.addEventListener("click", function () {
      actions.textContent = "";
      var reason = element("input");
      reason.type = "text";
      reason.maxLength = 200;
      reason.placeholder = "驳回原因（居民可见）";
      reason.setAttribute("aria-label", "驳回原因");
      var confirm = element("button", "bad", "确认驳回");
      confirm.type = "button";
      var cancel = element("button", "secondary", "取消");
      cancel.type = "button";
      actions.appendChild(reason);
      actions.appendChild(confirm);
      actions.appendChild(cancel);
      reason.focus();
      cancel.addEventListener("click", function () { li.replaceWith(renderResident(r, list)); });
      confirm.addEventListener("click", function () {
        if (!reason.value.trim()) {
          setText(error, "请填写驳回原因");
          show(error, true);
          return;
        }
        confirm.disabled = true;
        api("POST", "v1/admin/residents/" + encodeURIComponent(r.id) + "/reject",
            { reason: reason.value.trim() }).then(function (done) {
          removeRow(li, list);
          notice("已驳回 " + done.name + " 的认证申请");
        }, function (failure) {
          confirm.disabled = false;
          if (guard(failure)) { return; }
          setText(error, "驳回失败：" + messageOf(failure));
          show(error, true);
        });
      });
    });
    return li;
  }

  function renderDispute(q) {
    var li = element("li");
    li.dataset.requestId = q.id;
    li.appendChild(element("div", "title", q.title));
    li.appendChild(element("div", "meta", [categoryName(q.category), "服务时间 " + when(q.start_at),
      q.completed_minutes != null ? "申报 " + q.completed_minutes + " 分钟" : ""].filter(Boolean).join(" · ")));
    if (q.reason) { li.appendChild(element("div", "meta", "争议原因：" + q.reason)); }
    li.appendChild(element("div", "meta", "订单 " + q.id));
    return li;
  }

  function renderFlag(f) {
    var li = element("li");
    li.dataset.flagId = f.id;
    li.appendChild(element("div", "title", FLAG_KINDS[f.kind] || f.kind));
    var window_ = f.window_hours ? f.window_hours + " 小时" : f.window_days + " 天";
    li.appendChild(element("div", "meta", window_ + "内 " + f.count + " 次 · 发现于 " + when(f.created_at)));
    li.appendChild(element("div", "meta", "涉及家庭：" + (f.subjects || []).join("、")));
    return li;
  }

  var residentsList = listOf("residents", "v1/admin/residents?status=pending", renderResident, "待审核居民");
  var disputesList = listOf("disputes", "v1/admin/requests?status=disputed", renderDispute, "争议订单");
  var flagsList = listOf("flags", "v1/admin/risk/flags?status=open", renderFlag, "风险提示");
  [residentsList, disputesList, flagsList].forEach(function (list) {
    $(list.name + "-more").addEventListener("click", function () { loadList(list, true); });
  });

  window.timebankDashboard = { charts: charts, reload: loadBoard };

  var saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) { useToken(saved); } else { showLogin(""); }
})();
