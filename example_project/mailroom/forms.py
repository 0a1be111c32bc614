from django import forms


class ComposeForm(forms.Form):
    to = forms.CharField(help_text="One or more addresses, separated by commas.")
    subject = forms.CharField(max_length=200)
    message = forms.CharField(widget=forms.Textarea)

    def clean_to(self) -> list[str]:
        addresses = [a.strip() for a in self.cleaned_data["to"].split(",") if a.strip()]
        validator = forms.EmailField()
        for address in addresses:
            validator.clean(address)
        if not addresses:
            raise forms.ValidationError("Give at least one address.")
        return addresses
