from html import escape

import polib

from odoo.tests import TransactionCase, tagged
from odoo.tools.translate import (
    PYTHON_TRANSLATION_COMMENT,
    PoFileReader,
    TranslationModuleReader,
    code_translations,
    get_po_paths,
    get_translation,
)

MODULE = "crm_module"
# how many untranslated terms a failure message quotes before it just counts
QUOTED_TERMS = 40

# English source terms whose translation must be visible through the ORM once the
# language is loaded, one per kind of translatable value.
FIELD_LABEL = "Legal Basis"  # crm.consent.legal_basis
SELECTION_LABEL = "Consent (Art. 6(1)(a))"  # crm.consent.legal_basis 'consent'
MENU_NAME = "Requests"  # crm_privacy_request_menu
VIEW_TERM = "Run now"  # button label in crm_sync_backend_view_form
CODE_TERM = "Consent withdrawn in the consent ledger."  # crm_consent.py
TEMPLATE_SUBJECT = "{{ object.name }}: any news?"  # mail_template_followup

# What a French or Belgian user must read for those terms.
FRENCH = {
    FIELD_LABEL: "Base légale",
    SELECTION_LABEL: "Consentement (art. 6.1.a)",
    MENU_NAME: "Demandes",
    VIEW_TERM: "Exécuter maintenant",
    CODE_TERM: "Consentement retiré dans le registre des consentements.",
    TEMPLATE_SUBJECT: "{{ object.name }} : du nouveau ?",
}


@tagged("post_install", "-at_install", "crm_module", "crm_i18n")
class TestTranslations(TransactionCase):
    """Every term crm_module owns is translated in each supported language.

    The terms come from Odoo's own exporter, so they are the ones a fresh export
    of the add-on would put in crm_module.pot. A language's translations are the
    non-empty msgstr of crm_module/i18n/<base>.po and <lang>.po, the files Odoo
    loads for it (fr_BE falls back on fr.po, nl_BE on nl.po).
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.terms = {}  # source -> types of the occurrences (code, model...)
        cls.python_terms = set()
        # rows are (module, type, name, res_id, source, value, comments)
        for module, ttype, *_where, source, _value, comments in TranslationModuleReader(
            cls.env.cr, [MODULE]
        ):
            if module != MODULE:
                continue
            cls.terms.setdefault(source, set()).add(ttype)
            if ttype == "code" and PYTHON_TRANSLATION_COMMENT in comments:
                cls.python_terms.add(source)

    def _po_translations(self, lang):
        """Non-empty translations Odoo reads for ``lang``, and the .po files.

        PoFileReader merges crm_module.pot into the .po and drops the entries the
        pot lacks, exactly as Odoo does when it loads the language.
        """
        paths = list(get_po_paths(MODULE, lang))
        self.assertTrue(
            paths, f"no {MODULE}/i18n/{lang.split('_')[0]}.po nor {lang}.po"
        )
        translations = {}
        for path in paths:
            for row in PoFileReader(path):
                if row["value"]:
                    translations[row["src"]] = row["value"]
        return translations, paths

    def _load_language(self, lang):
        self.assertTrue(
            self.env["res.lang"]._activate_lang(lang), f"no language {lang}"
        )
        self.env["ir.module.module"]._load_module_terms(
            [MODULE], [lang], overwrite=True
        )
        self.env.invalidate_all()
        self.env.registry.clear_cache()

    def _assert_complete(self, lang, translations, paths):
        missing = sorted(set(self.terms) - set(translations))
        # a code term is only used when its entry says where it comes from
        python = code_translations.get_python_translations(MODULE, lang)
        unused = sorted(self.python_terms - set(python) - set(missing))
        if not missing and not unused:
            return
        # translated in the .po itself, but dropped because the pot lacks the term
        in_po = {
            entry.msgid
            for path in paths
            for entry in polib.pofile(path)
            if entry.msgstr and not entry.obsolete
        }
        lines = [
            f"{len(missing)} of {len(self.terms)} terms of {MODULE} have no {lang} "
            f"translation in {', '.join(paths)}:"
        ]
        for source in missing[:QUOTED_TERMS]:
            why = ", ".join(sorted(self.terms[source]))
            if source in in_po:
                why += f"; translated but missing from {MODULE}.pot: regenerate it"
            lines.append(f"  {source!r} ({why})")
        if len(missing) > QUOTED_TERMS:
            lines.append(f"  ... and {len(missing) - QUOTED_TERMS} more")
        if unused:
            lines.append(f"{len(unused)} code terms not loaded for Python code:")
            lines += [f"  {source!r}" for source in unused[:QUOTED_TERMS]]
        self.fail("\n".join(lines))

    def _assert_visible(self, lang, expected):
        """The translations of a few terms reach the user through the ORM."""
        env = self.env(context=dict(self.env.context, lang=lang))
        fields_info = env["crm.consent"].fields_get(
            ["legal_basis"], ["string", "selection"]
        )["legal_basis"]
        self.assertEqual(fields_info["string"], expected[FIELD_LABEL])
        self.assertIn(("consent", expected[SELECTION_LABEL]), fields_info["selection"])
        field = env["ir.model.fields"]._get("crm.consent", "legal_basis")
        self.assertEqual(field.field_description, expected[FIELD_LABEL])
        menu = env.ref(f"{MODULE}.crm_privacy_request_menu")
        self.assertEqual(menu.name, expected[MENU_NAME])
        view = env.ref(f"{MODULE}.crm_sync_backend_view_form")
        label = escape(expected[VIEW_TERM], quote=False).replace('"', "&quot;")
        self.assertIn(f'string="{label}"', view.arch_db)
        self.assertNotIn(f'string="{VIEW_TERM}"', view.arch_db)
        template = env.ref(f"{MODULE}.mail_template_followup")
        self.assertEqual(template.subject, expected[TEMPLATE_SUBJECT])
        source = CODE_TERM  # a variable, so the exporter does not take it as a term
        self.assertEqual(get_translation(MODULE, lang, source, ()), expected[CODE_TERM])

    def _check_language(self, lang):
        translations, paths = self._po_translations(lang)
        self._assert_complete(lang, translations, paths)
        self._load_language(lang)
        self._assert_visible(lang, translations)
        if lang.startswith("fr_"):
            self._assert_visible(lang, FRENCH)

    def test_i18n_fr_fr(self):
        self._check_language("fr_FR")

    def test_i18n_fr_be(self):
        self._check_language("fr_BE")

    def test_i18n_nl_nl(self):
        self._check_language("nl_NL")

    def test_i18n_nl_be(self):
        self._check_language("nl_BE")
