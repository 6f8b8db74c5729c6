"""The evaluation-report tables of both schemes (附件2/3 附表2 评分表 of 豫工信办节〔2024〕196号),
pre-filled with the items the receiver can compute, as plain tables any renderer can print.

Only the quantitative items get a score here; the rest of each table (buildings, management,
innovation, ...) needs an evaluator's judgement and is listed with its 分值 and an empty 得分,
so the pre-filled table never claims more than the data supports. The 符合性说明 column carries
each score's inputs and arithmetic, which is what a reviewer checks. The zero-carbon inputs are
wired from the carbon ledger here, so the offsets counted are exactly the ledger entries shown.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from cloud_receiver.accounting.ledger import Deductions, Ledger, deductions
from cloud_receiver.accounting.schemes import Num, RuleSet, Score, dec, evaluate, fmt

COLUMNS = ("序号", "一级指标", "二级指标", "具体评价要求", "符合性说明及证明材料索引", "分值", "得分")


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()

    def as_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        return (f"<table class=\"evaluation\"><caption>{html.escape(self.title)}</caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


#: (序号, 一级指标, 二级指标, requirement, 分值, (scheme, item) or None for manual items)
_ZERO_CARBON: tuple[tuple[str, str, str, str, str, tuple[str, str] | None], ...] = (
    ("1", "自主减排", "自主减排量", "累积减排量与碳排放总量的比值 ≥ 90% 得15分，否则比值÷90%×15（四舍五入）",
     "15", ("zero_carbon", "self_reduction")),
    ("1", "自主减排", "建筑 / 设备设施 / 生产工艺 / 能源和资源使用", "定性条目（见评分表）", "55", None),
    ("1", "自主减排", "温室气体核查与控制: 清单与核算报告", "定性条目", "4", None),
    ("1", "自主减排", "温室气体核查与控制: 近三年碳排放强度累计下降率",
     "下降率6%得2分，每增加1个百分点加1分，最高6分；不足6%不得分", "6",
     ("zero_carbon", "intensity_decline")),
    ("2", "能源和碳排放信息化管理系统", "/", "建立能碳管理中心", "5", None),
    ("3", "碳抵消", "抵消方式", "一种或多种碳抵消方式", "5", None),
    ("3", "碳抵消", "抵消比例", "抵消比例100%得10分；50%–100%按比例×10；不足50%不得分", "10",
     ("zero_carbon", "offset_ratio")),
)

_SUPER_EFFICIENCY: tuple[tuple[str, str, str, str, str, tuple[str, str] | None], ...] = (
    ("1", "能效水平", "单位产品综合能耗", "达到先进值或标杆值得15分；每低1.00%得1分，最高25分", "25",
     ("super_efficiency", "unit_product_energy")),
    ("2", "工艺技术装备", "工艺能效水平提升", "较上一年度提升10%得15分，5%得10分，3%得5分", "15",
     ("super_efficiency", "process_improvement")),
    ("2", "工艺技术装备", "数字化能碳管理中心 / 集中控制系统", "定性条目", "8", None),
    ("2", "工艺技术装备", "可再生能源占比", "大于10%得3分；5%–10%得2分；2%–5%得1分", "3",
     ("super_efficiency", "renewable_share")),
    ("2", "工艺技术装备", "一级能效电机占比", "占比×3分，最高3分", "3", ("super_efficiency", "motor_share")),
    ("2", "工艺技术装备", "一级能效变压器占比", "占比×3分，最高3分", "3",
     ("super_efficiency", "transformer_share")),
    ("2", "工艺技术装备", "锅炉 / 制冷机组 / 压缩机", "定性条目", "9", None),
    ("2", "工艺技术装备", "一级能效风机、泵占比", "占比×3分，最高3分", "3",
     ("super_efficiency", "fan_pump_share")),
    ("2", "工艺技术装备", "专用设备 / 经济运行", "定性条目", "6", None),
    ("3", "市场竞争力", "创新驱动发展 / 市场引领效应", "定性条目", "25", None),
)


def _table(title: str, layout: Sequence[tuple[str, str, str, str, str, tuple[str, str] | None]],
           scores: Mapping[tuple[str, str], Score]) -> Table:
    rows = []
    for no, first, second, requirement, points, key in layout:
        score = scores.get(key) if key else None
        if score is None:
            note = "需评价人员根据证明材料评定" if key is None else "缺少计算所需数据"
            rows.append((no, first, second, requirement, note, points, ""))
        else:
            note = (f"{score.working}（规则 {score.rules_version}，来源 {score.source}，"
                    f"状态 {score.status}）")
            rows.append((no, first, second, requirement, note, points, fmt(score.points)))
    return Table(title, COLUMNS, tuple(rows))


def zero_carbon_table(scores: Mapping[tuple[str, str], Score], year: int) -> Table:
    return _table(f"“零碳”工厂评分表（{year} 年）— 可计算条目已预填", _ZERO_CARBON, scores)


def super_efficiency_table(scores: Mapping[tuple[str, str], Score], year: int) -> Table:
    return _table(f"“超级能效”工厂评分表（{year} 年）— 可计算条目已预填", _SUPER_EFFICIENCY, scores)


def zero_carbon_scores(rules: RuleSet, ledger: Ledger, year: int, *, emissions_t: Num,
                       electricity_kwh: Num, grid_factor: Num,
                       intensity_three_years_ago: Num | None = None,
                       intensity_now: Num | None = None,
                       ) -> tuple[dict[tuple[str, str], Score], Deductions]:
    """The three zero-carbon items from the ledger and the year's accounted emissions.

    Self-reduction = baseline emissions (as they stood at the end of ``year``) − this year's,
    over the baseline; the offset ratio = ledger deductions over this year's emissions (the
    residual after self-reduction). Offsets never count as self-reduction."""
    out: dict[tuple[str, str], Score] = {}
    d = deductions(ledger, year, electricity_kwh, grid_factor)
    current = dec(emissions_t)
    baseline = ledger.baseline_on(date(year, 12, 31))
    if baseline is not None:
        out[("zero_carbon", "self_reduction")] = evaluate(
            rules, "zero_carbon", "self_reduction", reduction=baseline.emissions_t - current,
            total=baseline.emissions_t)
    if current > 0:
        out[("zero_carbon", "offset_ratio")] = evaluate(
            rules, "zero_carbon", "offset_ratio", offsets=d.total_t, residual=current)
    if intensity_three_years_ago is not None and intensity_now is not None:
        out[("zero_carbon", "intensity_decline")] = evaluate(
            rules, "zero_carbon", "intensity_decline", earlier=intensity_three_years_ago,
            later=intensity_now)
    return out, d
