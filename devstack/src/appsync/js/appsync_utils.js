// The devstack's `@aws-appsync/utils`: what an APPSYNC_JS resolver imports.
// Place in the data path: client -> AppSync **resolver** (this library, inside
// the QuickJS engine of engine.rs) -> data source (NONE | Lambda | DynamoDB).
//
// Evaluated (as a module, compiled once) before each handler runs; it defines
// `globalThis.__appsync`, which the `@aws-appsync/utils` module re-exports and
// the engine's glue (`__appsync.call`) reads back after the handler returns.
// Reference: https://docs.aws.amazon.com/appsync/latest/devguide/built-in-util-js.html
// https://docs.aws.amazon.com/appsync/latest/devguide/extensions-js.html
// https://docs.aws.amazon.com/appsync/latest/devguide/runtime-utils-js.html
// https://docs.aws.amazon.com/appsync/latest/devguide/dynamodb-helpers-in-util-dynamodb-js.html
(function () {
  'use strict';
  const host = globalThis.__devstack_host;
  const state = {
    info: { fieldName: '', parentTypeName: '' },
    subscriptionFilter: undefined,
    invalidationFilter: undefined,
    invalidations: [],
    errors: [],
  };

  // A thrown util.error / runtime.earlyReturn: told apart from any other
  // exception by these marker properties.
  function resolverError(message, type, data, errorInfo) {
    const e = new Error(message === undefined ? '' : String(message));
    e.__appsyncError = {
      message: message === undefined ? null : String(message),
      type: type === undefined || type === null ? null : String(type),
      data: data === undefined ? null : data,
      errorInfo: errorInfo === undefined ? null : errorInfo,
    };
    return e;
  }

  const OPERATORS = [
    'eq', 'ne', 'le', 'lt', 'ge', 'gt', 'contains', 'notContains',
    'beginsWith', 'in', 'notIn', 'between', 'containsAny',
  ];

  function isPlainObject(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  }

  // Every pairing of one group of `a` with one group of `b` (AND of two ORs).
  function crossProduct(a, b) {
    const out = [];
    for (const x of a) {
      for (const y of b) {
        out.push(x.concat(y));
      }
    }
    return out;
  }

  // A filter object -> its groups (OR of ANDed condition lists).
  function groupsOf(obj, prefix, ignored) {
    if (!isPlainObject(obj)) {
      throw new TypeError('toSubscriptionFilter expects an object');
    }
    let groups = [[]];
    for (const key of Object.keys(obj)) {
      const operand = obj[key];
      if (operand === undefined) {
        continue;
      }
      if (prefix === '' && key === 'or') {
        if (!Array.isArray(operand)) {
          throw new TypeError('`or` takes a list of filter objects');
        }
        let alternatives = [];
        for (const part of operand) {
          alternatives = alternatives.concat(groupsOf(part, '', ignored));
        }
        groups = crossProduct(groups, alternatives);
        continue;
      }
      if (prefix === '' && key === 'and') {
        if (!Array.isArray(operand)) {
          throw new TypeError('`and` takes a list of filter objects');
        }
        for (const part of operand) {
          groups = crossProduct(groups, groupsOf(part, '', ignored));
        }
        continue;
      }
      const fieldName = prefix === '' ? key : prefix + '.' + key;
      if (ignored.includes(fieldName)) {
        continue;
      }
      if (!isPlainObject(operand)) {
        throw new TypeError('the filter of `' + fieldName + '` must be an object of operators');
      }
      const conditions = [];
      let nested = null;
      for (const op of Object.keys(operand)) {
        if (operand[op] === undefined) {
          continue;
        }
        if (OPERATORS.includes(op)) {
          conditions.push({ fieldName, operator: op, value: operand[op] });
        } else {
          nested = nested || {};
          nested[op] = operand[op];
        }
      }
      groups = groups.map((g) => g.concat(conditions));
      if (nested !== null) {
        groups = crossProduct(groups, groupsOf(nested, fieldName, ignored));
      }
    }
    return groups;
  }

  function toSubscriptionFilter(obj, ignoredFields, rules) {
    if (rules !== undefined && rules !== null) {
      throw new TypeError('toSubscriptionFilter: rules are not supported by the devstack');
    }
    const ignored = Array.isArray(ignoredFields) ? ignoredFields : [];
    const groups = groupsOf(obj, '', ignored).filter((g) => g.length > 0);
    return { filterGroup: groups.map((filters) => ({ filters })) };
  }

  function isNull(v) {
    return v === null || v === undefined;
  }

  function typeOf(v) {
    if (isNull(v)) return 'Null';
    if (Array.isArray(v)) return 'List';
    switch (typeof v) {
      case 'string': return 'String';
      case 'number': return 'Number';
      case 'boolean': return 'Boolean';
      case 'object': return 'Map';
      default: return 'Object';
    }
  }

  // util.dynamodb: plain values -> DynamoDB typed values, as AppSync's own
  // helpers write them (numbers stay JSON numbers, `{ N: 12345 }`; lists, never
  // sets, unless a set helper is asked for; null is `{ NULL: null }`).
  function toDynamoDB(v) {
    if (isNull(v)) return { NULL: null };
    switch (typeof v) {
      case 'string': return { S: v };
      case 'number': return { N: v };
      case 'boolean': return { BOOL: v };
      default: break;
    }
    if (Array.isArray(v)) return { L: v.map(toDynamoDB) };
    if (typeof v === 'object') return { M: toMapValues(v) };
    throw new TypeError('util.dynamodb.toDynamoDB cannot convert a ' + typeof v);
  }

  function toMapValues(obj) {
    if (!isPlainObject(obj)) {
      throw new TypeError('util.dynamodb.toMapValues expects an object');
    }
    const out = {};
    for (const key of Object.keys(obj)) {
      if (obj[key] !== undefined) {
        out[key] = toDynamoDB(obj[key]);
      }
    }
    return out;
  }

  const dynamodb = {
    toDynamoDB,
    toMapValues,
    toString: (s) => ({ S: s }),
    toStringSet: (list) => ({ SS: list }),
    toNumber: (n) => ({ N: n }),
    toNumberSet: (list) => ({ NS: list }),
    toBinary: (b) => ({ B: b }),
    toBinarySet: (list) => ({ BS: list }),
    toBoolean: (b) => ({ BOOL: b }),
    toNull: () => ({ NULL: null }),
    toList: (list) => ({ L: list.map(toDynamoDB) }),
    toMap: (obj) => ({ M: toMapValues(obj) }),
    toS3Object(key, bucket, region, version) {
      const s3 = { key, bucket, region };
      if (version !== undefined) s3.version = version;
      return { S: JSON.stringify({ s3 }) };
    },
    fromS3ObjectJson(s) {
      return JSON.parse(s).s3;
    },
  };

  const util = {
    dynamodb,
    autoId() {
      return host.autoId();
    },
    error(message, errorType, data, errorInfo) {
      throw resolverError(message, errorType, data, errorInfo);
    },
    appendError(message, errorType, data, errorInfo) {
      state.errors.push(resolverError(message, errorType, data, errorInfo).__appsyncError);
    },
    unauthorized() {
      throw resolverError(
        'Not Authorized to access ' + state.info.fieldName + ' on type ' + state.info.parentTypeName,
        'Unauthorized',
      );
    },
    isNull,
    isNullOrEmpty(v) {
      return isNull(v) || (typeof v === 'string' && v.length === 0);
    },
    isNullOrBlank(v) {
      return isNull(v) || (typeof v === 'string' && v.trim().length === 0);
    },
    defaultIfNull(v, d) {
      return isNull(v) ? d : v;
    },
    defaultIfNullOrEmpty(v, d) {
      return util.isNullOrEmpty(v) ? d : v;
    },
    defaultIfNullOrBlank(v, d) {
      return util.isNullOrBlank(v) ? d : v;
    },
    isString: (v) => typeof v === 'string',
    isNumber: (v) => typeof v === 'number',
    isBoolean: (v) => typeof v === 'boolean',
    isList: (v) => Array.isArray(v),
    isMap: (v) => isPlainObject(v),
    typeOf,
    matches(pattern, s) {
      return new RegExp('^(?:' + pattern + ')$').test(s);
    },
    urlEncode: (s) => encodeURIComponent(s),
    urlDecode: (s) => decodeURIComponent(s),
    escapeJavaScript: (s) => JSON.stringify(String(s)).slice(1, -1),
    time: {
      nowISO8601: () => new Date(host.nowMillis()).toISOString(),
      nowEpochSeconds: () => Math.floor(host.nowMillis() / 1000),
      nowEpochMilliSeconds: () => host.nowMillis(),
      parseISO8601ToEpochMilliSeconds: (s) => Date.parse(s),
      epochMilliSecondsToSeconds: (ms) => Math.floor(ms / 1000),
      epochMilliSecondsToISO8601: (ms) => new Date(ms).toISOString(),
    },
    transform: {
      toSubscriptionFilter,
    },
  };

  const extensions = {
    setSubscriptionFilter(filter) {
      state.subscriptionFilter = filter;
    },
    setSubscriptionInvalidationFilter(filter) {
      state.invalidationFilter = filter;
    },
    invalidateSubscriptions(invalidation) {
      state.invalidations.push(invalidation);
    },
  };

  const runtime = {
    earlyReturn(obj) {
      const e = new Error('earlyReturn');
      e.__appsyncEarlyReturn = { value: obj === undefined ? null : obj };
      throw e;
    },
  };

  function describe(e) {
    if (e !== null && typeof e === 'object' && e.__appsyncError) {
      return { error: e.__appsyncError };
    }
    if (e !== null && typeof e === 'object' && e.__appsyncEarlyReturn) {
      return { earlyReturn: e.__appsyncEarlyReturn };
    }
    let message;
    if (e instanceof Error) {
      message = e.name + ': ' + e.message;
    } else {
      message = String(e);
    }
    return { exception: message };
  }

  // Runs one handler on a context given as JSON; answers JSON:
  // {returned, ctx: {stash, args}, state} or {thrown: {error|earlyReturn|exception}, ...}.
  function call(handler, ctxJson) {
    const ctx = JSON.parse(ctxJson);
    ctx.arguments = ctx.args;
    state.info = ctx.info || state.info;
    let out;
    try {
      const returned = handler(ctx);
      out = { returned: returned === undefined ? null : returned };
    } catch (e) {
      out = { thrown: describe(e) };
    }
    out.ctx = { stash: ctx.stash, args: ctx.args };
    out.state = {
      subscriptionFilter: state.subscriptionFilter === undefined ? null : state.subscriptionFilter,
      errors: state.errors,
    };
    return JSON.stringify(out);
  }

  function show(args) {
    return args.map((a) => (a !== null && typeof a === 'object' ? JSON.stringify(a) : String(a))).join(' ');
  }
  const console = {
    log: (...a) => host.log('info', show(a)),
    info: (...a) => host.log('info', show(a)),
    debug: (...a) => host.log('debug', show(a)),
    warn: (...a) => host.log('warn', show(a)),
    error: (...a) => host.log('error', show(a)),
  };

  globalThis.console = console;
  globalThis.__appsync = { util, extensions, runtime, call };
})();
