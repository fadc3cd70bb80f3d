/* Deterministic member generator of membersync-sim.  Record i is computed
 * from (seed, i) alone, so a page is built from its index range and a
 * million-member dataset costs no memory.  A non-zero variant changes about
 * one record in ten (chosen from (seed, i, variant)), which gives "updated"
 * runs for benchmarks; variant 0 is the base dataset. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "ms_util.h"
#include "sim.h"

static const char *const ms_sim_female[] = {
    "Nora",  "Emma",  "Ella",    "Maja",  "Olivia",   "Sofie",    "Ingrid",  "Leah",
    "Sara",  "Frida", "Astrid",  "Selma", "Ida",      "Vilde",    "Thea",    "Aurora",
    "Hedda", "Marte", "Kari",    "Anne",  "Inger",    "Liv",      "Solveig", "Åse",
    "Bjørg", "Gro",   "Tone",    "Hilde", "Ragnhild", "Sigrid",   "Marit",   "Randi",
    "Eli",   "Silje", "Kristin", "Mette", "Camilla",  "Ingeborg", "Tiril",   "Linnéa"};
static const char *const ms_sim_male[] = {
    "Jakob",   "Emil",   "Noah",   "Oliver", "Filip",    "William", "Lucas",  "Henrik",
    "Aksel",   "Magnus", "Ole",    "Lars",   "Per",      "Kjell",   "Arne",   "Knut",
    "Svein",   "Bjørn",  "Jan",    "Odd",    "Terje",    "Geir",    "Tor",    "Rune",
    "Øyvind",  "Håkon",  "Sindre", "Eirik",  "Kristian", "Sander",  "Martin", "Jonas",
    "Mathias", "Tobias", "Even",   "Trond",  "Stian",    "Espen",   "Halvor", "Asbjørn"};
static const char *const ms_sim_last[] = {
    "Hansen",    "Johansen",      "Olsen",      "Larsen",    "Andersen",    "Pedersen",
    "Nilsen",    "Kristiansen",   "Jensen",     "Karlsen",   "Johnsen",     "Pettersen",
    "Eriksen",   "Berg",          "Haugen",     "Hagen",     "Johannessen", "Andreassen",
    "Jacobsen",  "Dahl",          "Jørgensen",  "Halvorsen", "Henriksen",   "Lund",
    "Sørensen",  "Jakobsen",      "Moen",       "Gundersen", "Iversen",     "Strand",
    "Solberg",   "Svendsen",      "Eide",       "Knutsen",   "Martinsen",   "Paulsen",
    "Bakken",    "Kristoffersen", "Mathisen",   "Lie",       "Amundsen",    "Nguyen",
    "Rasmussen", "Ali",           "Lunde",      "Solheim",   "Berge",       "Moe",
    "Nygård",    "Bakke",         "Fredriksen", "Holm",      "Lien",        "Hauge",
    "Sæther",    "Aas",           "Myhre",      "Haugland",  "Sandvik",     "Rønning",
    "Næss",      "Vik",           "Haug",       "Thorsen",   "Birkeland",   "Ruud",
    "Strøm",     "Myklebust",     "Tangen",     "Ødegård",   "Brekke",      "Aune"};
static const char *const ms_sim_places[] = {
    "Oslo",         "Bergen",    "Trondheim", "Stavanger", "Drammen",     "Fredrikstad",
    "Kristiansand", "Sandnes",   "Tromsø",    "Sarpsborg", "Skien",       "Ålesund",
    "Sandefjord",   "Haugesund", "Tønsberg",  "Moss",      "Porsgrunn",   "Bodø",
    "Arendal",      "Hamar",     "Larvik",    "Halden",    "Lillehammer", "Molde",
    "Harstad",      "Gjøvik",    "Kongsberg", "Horten",    "Steinkjer",   "Narvik",
    "Alta",         "Levanger",  "Namsos",    "Elverum",   "Grimstad",    "Kongsvinger",
    "Voss",         "Førde",     "Florø",     "Mo i Rana"};
static const char *const ms_sim_domains[] = {"gmail.com", "hotmail.com", "yahoo.com",
                                             "online.no", "outlook.com", "icloud.com",
                                             "live.no",   "broadpark.no"};

#define MS_SIM_N(a) (sizeof(a) / sizeof((a)[0]))

/* Native spellings per system, in canonical order ACTIVE, LAPSED, RESIGNED,
 * DECEASED and PEER_MENTOR, COORDINATOR, LOCAL_LEADER, BOARD_MEMBER. */
static const char *const ms_sim_cs_status[] = {"Active", "Lapsed", "Resigned",
                                               "Deceased"};
static const char *const ms_sim_cx_status[] = {"Aktiv", "Ikke betalt", "Utmeldt", "Død"};
static const char *const ms_sim_cs_roles[] = {"PeerMentor", "Coordinator", "LocalLeader",
                                              "BoardMember"};
static const char *const ms_sim_cx_roles[] = {"Likeperson", "Koordinator",
                                              "Lokallagsleder", "Styremedlem"};

typedef struct ms_sim_rng {
        uint64_t s;
} ms_sim_rng_t;

static uint64_t ms_sim_rng_next(ms_sim_rng_t *r)
{
        uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
}

static uint64_t ms_sim_mix(uint64_t a, uint64_t b, uint64_t c)
{
        ms_sim_rng_t r = {a ^ (b * 0xD6E8FEB86659FD93ull) ^ (c * 0xA0761D6478BD642Full)};
        ms_sim_rng_next(&r);
        return ms_sim_rng_next(&r);
}

/* Uniform in [0, n). */
static uint64_t ms_sim_below(ms_sim_rng_t *r, uint64_t n)
{
        return n ? ms_sim_rng_next(r) % n : 0;
}

static int ms_sim_days_in_month(int y, int m)
{
        static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                return 29;
        return dm[m - 1];
}

/* Lower-case ASCII form of a Norwegian name for e-mail addresses. */
static void ms_sim_ascii_lower(const char *in, char *out, size_t size)
{
        size_t o = 0;
        const unsigned char *p = (const unsigned char *)in;
        while (*p && o + 3 < size) {
                if (p[0] == 0xC3 && p[1]) {
                        const char *rep = "";
                        switch (p[1]) {
                        case 0xA6: /* æ */
                        case 0x86: /* Æ */
                                rep = "ae";
                                break;
                        case 0xB8: /* ø */
                        case 0x98: /* Ø */
                                rep = "o";
                                break;
                        case 0xA5: /* å */
                        case 0x85: /* Å */
                                rep = "a";
                                break;
                        case 0xA9: /* é */
                                rep = "e";
                                break;
                        default:
                                break;
                        }
                        for (; *rep; rep++)
                                out[o++] = *rep;
                        p += 2;
                        continue;
                }
                if (isalnum(*p))
                        out[o++] = (char)tolower(*p);
                p++;
        }
        out[o] = '\0';
}

typedef struct ms_sim_member {
        char first[32];
        char last[64];
        char email[128];
        int has_email;
        char phone[8 + 1]; /* the 8 digits; formatted per system */
        int phone_fmt;
        int has_phone;
        int by, bm, bd; /* birth date */
        int assoc;      /* index into ms_sim_places, -1 = none */
        int status;     /* 0..3 */
        int from_year;
        int to_year; /* 0 = open-ended */
        int roles[2];
        int n_roles;
        int64_t modified; /* epoch seconds */
} ms_sim_member_t;

static void ms_sim_member_base(uint64_t seed, int64_t index, ms_sim_member_t *m)
{
        ms_sim_rng_t r = {ms_sim_mix(seed, (uint64_t)index, 0x5EED)};
        memset(m, 0, sizeof(*m));

        int female = ms_sim_below(&r, 2) == 0;
        snprintf(m->first, sizeof(m->first), "%s",
                 female ? ms_sim_female[ms_sim_below(&r, MS_SIM_N(ms_sim_female))]
                        : ms_sim_male[ms_sim_below(&r, MS_SIM_N(ms_sim_male))]);
        const char *l1 = ms_sim_last[ms_sim_below(&r, MS_SIM_N(ms_sim_last))];
        /* Some members carry a double surname, as is common in Norway. */
        if (ms_sim_below(&r, 12) == 0) {
                const char *l2 = ms_sim_last[ms_sim_below(&r, MS_SIM_N(ms_sim_last))];
                snprintf(m->last, sizeof(m->last), "%s %s", l1, l2);
        } else {
                snprintf(m->last, sizeof(m->last), "%s", l1);
        }

        m->by = 1935 + (int)ms_sim_below(&r, 76);
        m->bm = 1 + (int)ms_sim_below(&r, 12);
        m->bd = 1 + (int)ms_sim_below(&r, (uint64_t)ms_sim_days_in_month(m->by, m->bm));

        char fa[32], la[64];
        ms_sim_ascii_lower(m->first, fa, sizeof(fa));
        ms_sim_ascii_lower(m->last, la, sizeof(la));
        const char *dom = ms_sim_domains[ms_sim_below(&r, MS_SIM_N(ms_sim_domains))];
        switch (ms_sim_below(&r, 4)) {
        case 0:
                snprintf(m->email, sizeof(m->email), "%s.%s@%s", fa, la, dom);
                break;
        case 1:
                snprintf(m->email, sizeof(m->email), "%s_%s@%s", fa, la, dom);
                break;
        case 2:
                snprintf(m->email, sizeof(m->email), "%s.%s%d@%s", fa, la, m->by % 100,
                         dom);
                break;
        default:
                snprintf(m->email, sizeof(m->email), "%s%s%d@%s", fa, la,
                         (int)ms_sim_below(&r, 100), dom);
                break;
        }
        m->has_email = ms_sim_below(&r, 100) >= 3;

        /* Norwegian mobile numbers start with 4 or 9. */
        m->phone[0] = ms_sim_below(&r, 2) ? '9' : '4';
        for (int i = 1; i < 8; i++)
                m->phone[i] = (char)('0' + ms_sim_below(&r, 10));
        m->phone[8] = '\0';
        m->phone_fmt = (int)ms_sim_below(&r, 4);
        m->has_phone = ms_sim_below(&r, 100) >= 4;

        m->assoc = ms_sim_below(&r, 100) < 5
                       ? -1
                       : (int)ms_sim_below(&r, MS_SIM_N(ms_sim_places));

        uint64_t s = ms_sim_below(&r, 100);
        m->status = s < 85 ? 0 : s < 93 ? 1 : s < 98 ? 2 : 3;
        int earliest = m->by + 15 > 1980 ? m->by + 15 : 1980;
        if (earliest > 2025)
                earliest = 2025;
        m->from_year = earliest + (int)ms_sim_below(&r, (uint64_t)(2026 - earliest));
        if (m->status == 0)
                m->to_year = 2026;
        else if (m->status == 1)
                m->to_year = 2025;
        else
                m->to_year =
                    m->from_year + (int)ms_sim_below(&r, (uint64_t)(2026 - m->from_year));

        if (ms_sim_below(&r, 100) < 10) {
                m->roles[m->n_roles++] = (int)ms_sim_below(&r, 4);
                if (ms_sim_below(&r, 4) == 0) {
                        int second = (int)ms_sim_below(&r, 4);
                        if (second != m->roles[0])
                                m->roles[m->n_roles++] = second;
                }
        }
        /* 2023-01-01T00:00:00Z .. 2026-06-01 */
        m->modified = 1672531200 + (int64_t)ms_sim_below(&r, 107049600);
}

/* Applies the changes of a non-zero variant to about one record in ten. */
static void ms_sim_member_variant(uint64_t seed, int64_t index, int64_t variant,
                                  ms_sim_member_t *m)
{
        if (variant == 0)
                return;
        ms_sim_rng_t r = {
            ms_sim_mix(seed, (uint64_t)index, 0xC0FFEE ^ (uint64_t)variant)};
        if (ms_sim_below(&r, 10) != 0)
                return;
        switch (ms_sim_below(&r, 5)) {
        case 0: { /* new e-mail address */
                char *at = strchr(m->email, '@');
                if (at) {
                        char tail[96];
                        snprintf(tail, sizeof(tail), "%s", at);
                        snprintf(at, sizeof(m->email) - (size_t)(at - m->email), "%d%s",
                                 (int)(variant % 100), tail);
                }
                m->has_email = 1;
                break;
        }
        case 1: /* new phone number */
                for (int i = 1; i < 8; i++)
                        m->phone[i] = (char)('0' + ms_sim_below(&r, 10));
                m->has_phone = 1;
                break;
        case 2: /* moved to another local association */
                m->assoc = (m->assoc + 1 + (int)ms_sim_below(&r, 5)) %
                           (int)MS_SIM_N(ms_sim_places);
                break;
        case 3: /* membership lapsed or renewed */
                m->status = m->status == 0 ? 1 : 0;
                m->to_year = m->status == 0 ? 2026 : 2025;
                break;
        default: /* took on a role */
                if (m->n_roles < 2) {
                        int role = (int)ms_sim_below(&r, 4);
                        if (m->n_roles == 0 || m->roles[0] != role)
                                m->roles[m->n_roles++] = role;
                } else {
                        m->n_roles = 0;
                }
                break;
        }
        /* Changed records were touched after the base snapshot. */
        m->modified = 1780272000 + (int64_t)ms_sim_below(&r, 86400 * 30);
}

static void ms_sim_format_phone(const ms_sim_member_t *m, char *out, size_t size)
{
        const char *p = m->phone;
        switch (m->phone_fmt) {
        case 0:
                snprintf(out, size, "%s", p);
                break;
        case 1:
                snprintf(out, size, "%.3s %.2s %.3s", p, p + 3, p + 5);
                break;
        case 2:
                snprintf(out, size, "+47 %.3s %.2s %.3s", p, p + 3, p + 5);
                break;
        default:
                snprintf(out, size, "0047%s", p);
                break;
        }
}

/* RFC 3339 UTC for Cornerstone (iso != 0), "YYYY-MM-DD HH:MM:SS" for Consio. */
static void ms_sim_fmt_time(int64_t epoch, int iso, char *out, size_t size)
{
        int32_t days = (int32_t)(epoch / 86400);
        int64_t secs = epoch % 86400;
        int y, mo, d;
        ms_civil_from_days(days, &y, &mo, &d);
        snprintf(out, size,
                 iso ? "%04d-%02d-%02dT%02d:%02d:%02dZ" : "%04d-%02d-%02d %02d:%02d:%02d",
                 y, mo, d, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
}

void ms_sim_gen_record(ms_system_t sys, uint64_t seed, int64_t variant, int64_t index,
                       ms_sim_buf_t *out)
{
        ms_sim_member_t m;
        char buf[64];
        json_t *o = json_object();
        json_t *roles = json_array();
        if (!o || !roles) {
                json_decref(o);
                json_decref(roles);
                out->oom = 1;
                return;
        }
        ms_sim_member_base(seed, index, &m);
        ms_sim_member_variant(seed, index, variant, &m);

        char phone[24];
        ms_sim_format_phone(&m, phone, sizeof(phone));
        int cs = sys == MS_SYSTEM_CORNERSTONE;
        const char *const *role_names = cs ? ms_sim_cs_roles : ms_sim_cx_roles;
        for (int i = 0; i < m.n_roles; i++)
                json_array_append_new(roles, json_string(role_names[m.roles[i]]));
        char assoc_name[64];
        if (m.assoc >= 0)
                snprintf(assoc_name, sizeof(assoc_name), "%s lokallag",
                         ms_sim_places[m.assoc]);

        if (cs) {
                /* Multiplying by an odd constant is a bijection modulo 2^32,
                 * so ids look scattered yet never collide (N < 2^32). */
                uint32_t idv = (uint32_t)((uint64_t)index * 2654435761u + (uint32_t)seed);
                snprintf(buf, sizeof(buf), "cs-%08x", idv);
                json_object_set_new(o, "id", json_string(buf));
                snprintf(buf, sizeof(buf), "%lld", 1000000LL + (long long)index);
                json_object_set_new(o, "memberNumber", json_string(buf));
                json_object_set_new(o, "firstName", json_string(m.first));
                json_object_set_new(o, "lastName", json_string(m.last));
                json_object_set_new(o, "email",
                                    m.has_email ? json_string(m.email) : json_null());
                json_object_set_new(o, "mobilePhone",
                                    m.has_phone ? json_string(phone) : json_null());
                snprintf(buf, sizeof(buf), "%04d-%02d-%02d", m.by, m.bm, m.bd);
                json_object_set_new(o, "dateOfBirth", json_string(buf));
                if (m.assoc >= 0) {
                        snprintf(buf, sizeof(buf), "LA-%04d", 100 + m.assoc);
                        json_object_set_new(
                            o, "localAssociation",
                            json_pack("{s:s,s:s}", "id", buf, "name", assoc_name));
                } else {
                        json_object_set_new(o, "localAssociation", json_null());
                }
                json_object_set_new(o, "membershipStatus",
                                    json_string(ms_sim_cs_status[m.status]));
                snprintf(buf, sizeof(buf), "%04d-01-01", m.from_year);
                json_object_set_new(o, "membershipValidFrom", json_string(buf));
                snprintf(buf, sizeof(buf), "%04d-12-31", m.to_year);
                json_object_set_new(o, "membershipValidTo", json_string(buf));
                json_object_set_new(o, "roles", roles);
                ms_sim_fmt_time(m.modified, 1, buf, sizeof(buf));
                json_object_set_new(o, "lastModified", json_string(buf));
        } else {
                json_object_set_new(o, "actNo", json_integer(100000 + index));
                snprintf(buf, sizeof(buf), "%lld", 1000000LL + (long long)index);
                json_object_set_new(o, "memberNo", json_string(buf));
                json_object_set_new(o, "firstName", json_string(m.first));
                json_object_set_new(o, "lastName", json_string(m.last));
                json_object_set_new(o, "email",
                                    m.has_email ? json_string(m.email) : json_null());
                json_object_set_new(o, "mobile",
                                    m.has_phone ? json_string(phone) : json_null());
                snprintf(buf, sizeof(buf), "%02d.%02d.%04d", m.bd, m.bm, m.by);
                json_object_set_new(o, "birthDate", json_string(buf));
                if (m.assoc >= 0)
                        json_object_set_new(o, "localBranch",
                                            json_pack("{s:i,s:s}", "no", 100 + m.assoc,
                                                      "name", assoc_name));
                else
                        json_object_set_new(o, "localBranch", json_null());
                json_object_set_new(o, "status", json_string(ms_sim_cx_status[m.status]));
                snprintf(buf, sizeof(buf), "01.01.%04d", m.from_year);
                json_object_set_new(o, "enrolledDate", json_string(buf));
                if (m.status >= 2) {
                        snprintf(buf, sizeof(buf), "31.12.%04d", m.to_year);
                        json_object_set_new(o, "resignedDate", json_string(buf));
                } else {
                        json_object_set_new(o, "resignedDate", json_null());
                }
                json_object_set_new(o, "roles", roles);
                /* changedAt is Oslo local time; the UTC fields are a fine
                 * stand-in for a simulated wall clock. */
                ms_sim_fmt_time(m.modified, 0, buf, sizeof(buf));
                json_object_set_new(o, "changedAt", json_string(buf));
        }
        ms_sim_buf_json(out, o);
        json_decref(o);
}
