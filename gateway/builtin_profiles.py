"""The built-in upstream code profiles: the national table (GB/T 39046-2020) and Zhejiang's.

Each is plain data read by gateway.profiles.Profile: code tables and (canonical field, API field,
converter[, constant]) rows per kind. A province not listed here is a table in the gateway config.
"""

from protocol import vocab

# --- canonical channels: how the rating reached us ----------------------------------------------
CH_HALL_EVALUATOR = "hall_evaluator"   # a window evaluator (评价器 / hall tablet)
CH_QR = "qr"                          # rate-later QR code on the receipt
CH_SYSTEM = "system_default"          # set by the central side when the 7-day window closed
CHANNELS = (CH_HALL_EVALUATOR, CH_QR, CH_SYSTEM)

_NATIONAL_CHANNELS = {CH_HALL_EVALUATOR: "4", CH_QR: "3", CH_SYSTEM: "9"}  # PF codes; 9 = other

GBT39046 = {
    # GB/T 39046-2020 table 9; satisfaction codes from appendix A.8 (1 = 非常满意).
    "name": "gbt39046",
    "time_format": "%Y%m%dT%H%M%S",
    "levels": {1: 1, 2: 2, 3: 3, 4: 4, 5: 5},
    "sources": {vocab.SRC_PRESS: "press", vocab.SRC_NOT_RATED: "not_rated",
                vocab.SRC_SYSTEM_DEFAULT: "system_default"},
    "channels": _NATIONAL_CHANNELS,
    "nodes": {vocab.NODE_RECEIPT: "receipt", vocab.NODE_ACCEPTANCE: "acceptance",
              vocab.NODE_COMPLETION: "completion", vocab.NODE_PICKUP: "pickup"},
    "item_code": "itemCode", "item_level": "satisfactionCode", "item_name": "itemName",
    "applicant": "omit",
    "rating_fields": (
        ("rating_id", "evaluationId", "text"),
        ("serials", "caseNo", "first_serial"),          # 办件编号
        ("serials", "caseNos", "texts"),                 # every case of a batch (Art. 20)
        ("node", "node", "node"),
        ("source", "source", "source"),
        ("channel", "channel", "channel"),               # 评价渠道
        ("applicant", "rater", "any"),                   # 评价人 (only if the profile sends it)
        ("gateway_time", "evaluationTime", "time"),      # 评价时间
        ("evaluation_count", "evaluationCount", "int"),  # 评价次数
        ("overall", "satisfaction", "level_name"),       # 满意度
        ("overall", "satisfactionCode", "level"),        # 满意度代码
        ("business", "businessSatisfactionCode", "level"),
        ("service", "serviceSatisfactionCode", "level"),
        ("tags", "tagCodes", "csv"),
        ("text", "textEvaluation", "text"),              # 文字评价
        ("items", "itemEvaluations", "rated_items"),
        ("division", "divisionCode", "text"),            # 行政区划
        ("hall", "hallCode", "text"),
        ("window", "windowNo", "text"),
        ("staff_id", "staffId", "text"),
        ("staff_name", "staffName", "text"),
        ("matter_code", "matterCode", "text"),
        ("matter_name", "matterName", "text"),
        ("device", "deviceId", "text"),
        ("counter", "deviceCounter", "int"),
        ("device_time", "deviceTime", "int"),
        ("tags_version", "tagsVersion", "int"),          # the tag list offered (CONFIG version)
    ),
    "case_fields": (
        ("case_key", "caseKey", "text"),
        ("serials", "caseNo", "first_serial"),
        ("serials", "caseNos", "texts"),
        ("node", "node", "node"),
        ("hall", "hallCode", "text"),
        ("window", "windowNo", "text"),
        ("staff_id", "staffId", "text"),
        ("staff_name", "staffName", "text"),
        ("matter_code", "matterCode", "text"),
        ("matter_name", "matterName", "text"),
        ("completed_at", "completedTime", "time"),
        ("deadline", "deadline", "time"),
        ("items", "themeItems", "theme_items"),
        ("division", "divisionCode", "text"),
    ),
}

ZHEJIANG = {
    # Zhejiang: satisfaction 1 = 非常不满意 ... 5 = 非常满意; channel `pf`, 7 = system default.
    "name": "zhejiang",
    "time_format": "%Y-%m-%d %H:%M:%S",
    "levels": {1: 5, 2: 4, 3: 3, 4: 2, 5: 1},
    "sources": {vocab.SRC_PRESS: 1, vocab.SRC_NOT_RATED: 2, vocab.SRC_SYSTEM_DEFAULT: 3},
    "channels": {CH_HALL_EVALUATOR: 4, CH_QR: 3, CH_SYSTEM: 7},
    "nodes": {vocab.NODE_RECEIPT: 1, vocab.NODE_ACCEPTANCE: 2, vocab.NODE_COMPLETION: 3,
              vocab.NODE_PICKUP: 4},
    "item_code": "taskCode", "item_level": "satisfaction", "item_name": "taskName",
    "applicant": "omit",
    "rating_fields": (
        ("rating_id", "evalId", "text"),
        ("serials", "projectNo", "first_serial"),
        ("serials", "projectNos", "texts"),
        ("node", "nodeCode", "node"),
        ("source", "evalSource", "source"),
        ("channel", "pf", "channel"),
        ("applicant", "userInfo", "any"),
        ("gateway_time", "assessTime", "time"),
        ("evaluation_count", "assessNumber", "int"),
        ("overall", "satisfaction", "level"),
        ("business", "businessSatisfaction", "level"),
        ("service", "serviceSatisfaction", "level"),
        ("tags", "evalDetail", "csv"),
        ("text", "writingEvaluation", "text"),
        ("items", "subEvaluations", "rated_items"),
        ("division", "areaCode", "text"),
        ("hall", "hallCode", "text"),
        ("window", "windowNo", "text"),
        ("staff_id", "userCode", "text"),
        ("staff_name", "userName", "text"),
        ("matter_code", "taskCode", "text"),
        ("matter_name", "taskName", "text"),
        ("device", "deviceCode", "text"),
        ("counter", "deviceSeq", "int"),
        ("device_time", "deviceTime", "int"),
        ("pro_status", "proStatus", "const", 3),       # 3 = completed (办结) as the API expects
    ),
    "case_fields": (
        ("case_key", "caseKey", "text"),
        ("serials", "projectNo", "first_serial"),
        ("serials", "projectNos", "texts"),
        ("node", "nodeCode", "node"),
        ("hall", "hallCode", "text"),
        ("window", "windowNo", "text"),
        ("staff_id", "userCode", "text"),
        ("staff_name", "userName", "text"),
        ("matter_code", "taskCode", "text"),
        ("matter_name", "taskName", "text"),
        ("completed_at", "finishTime", "time"),
        ("deadline", "evalDeadline", "time"),
        ("items", "subTasks", "theme_items"),
        ("division", "areaCode", "text"),
    ),
}

BUILTIN = {"gbt39046": GBT39046, "zhejiang": ZHEJIANG}
