"""``envaudit fleet ... --format junit``: one test case per node (classname ``envaudit.fleet``).

A node fails when it could not run (type ``error``), when its verdict is a finding (drift,
precision_loss), when it is a suspected fault (``suspected_fault``) or when its fingerprint group
is not the reference group (``config_drift``): the failures mirror the exit code. The headline,
exit code and group count are suite properties. Built with ``xml.etree`` (a node's ``<img>`` stays
text); characters XML cannot carry, or a terminal would act on, are replaced
(``escape.for_xml``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from envaudit.fleet.report import FINDING_VERDICTS, FleetNode, FleetReport
from envaudit.render.escape import for_xml
from envaudit.render.formatting import fleet_node_result


def render(report: FleetReport) -> str:
    suite = ET.Element("testsuite", name="envaudit.fleet")
    props = ET.SubElement(suite, "properties")
    for name, value in (("headline", report.headline), ("exit_code", str(report.exit_code)),
                        ("groups", str(len(report.groups))),
                        ("golden_fingerprint_id", report.golden_fingerprint_id)):
        ET.SubElement(props, "property", name=name, value=value)
    reference = {n for g in report.groups if g.reference for n in g.nodes}
    failures = 0
    for node in report.nodes:
        case = ET.SubElement(suite, "testcase", classname="envaudit.fleet", name=node.label,
                             time=f"{node.seconds:.3f}")
        kind = _failure(node, reference)
        if kind:
            failures += 1
            element = "error" if kind == "error" else "failure"
            ET.SubElement(case, element, type=kind, message=fleet_node_result(node))
        ET.SubElement(case, "system-out").text = (
            f"fingerprint {node.fingerprint_id or '-'}; {fleet_node_result(node)}")
    suite.set("tests", str(len(report.nodes)))
    suite.set("failures", str(failures))
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            + for_xml(ET.tostring(suite, encoding="unicode")) + "\n")


def _failure(node: FleetNode, reference: set[str]) -> str | None:
    if node.error is not None:
        return "error"
    if node.suspect is not None:
        return "suspected_fault"
    if node.verdict in FINDING_VERDICTS:
        return node.verdict
    if node.label not in reference:
        return "config_drift"
    return None


